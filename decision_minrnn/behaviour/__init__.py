"""Behaviour policies and offline regeneration of D4RL-protocol datasets.

- `actor`: the SAC actor of stable-baselines3 as a small torch module loading safetensors (no SB3 at run time).
- `layout`: D4RL's flat transition arrays and the compact stream form the medium-replay data ships in.
- `vector`: acting through a same-step-autoreset gymnasium vector env: collecting data, measuring returns.
- `shipped`: reading `agents/behaviour/<env>/` (actors, medium-replay stream, card.json).
- `regenerate`: `regenerate_dataset(task)` / `regenerated_dataset_path(task)`: the recipe, written as D4RL HDF5.
- `sac_training`, `run_folder`, `shipping`: making behaviour policies (SB3 SAC) and turning a run into shipped data.

Nothing here is imported by `import decision_minrnn`; gymnasium and stable-baselines3 load where they are used.
"""
