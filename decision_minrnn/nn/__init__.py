"""The neural layer, importable with torch alone: the scan, the backbones and the DecisionModel."""
