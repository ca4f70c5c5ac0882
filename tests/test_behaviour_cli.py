"""`collect_dataset`: bad input is one line on stderr with exit code 2; a small regeneration works end to end."""

from __future__ import annotations

import h5py
import pytest

from decision_minrnn.cli.collect import main


@pytest.mark.parametrize(
    "argv, message",
    [
        (["hopper-medum"], "unknown task"),
        (["hopper-medium", "--transitions", "0"], "positive integer"),
        (["hopper-medium", "--transitions", "-5"], "positive integer"),
        (["hopper-medium", "--num-envs", "0"], "positive integer"),
        (["hopper-medium-v2"], "D4RL v2 file only"),
        (["hopper-medium", "--seed", "-1"], "non-negative"),
        ([], "exactly one of"),
        (["hopper-medium", "--train-behaviour", "hopper"], "exactly one of"),
        (["--train-behaviour", "hopper"], "--steps"),
        (["--train-behaviour", "ant", "--steps", "10"], "unknown environment"),
        (["--import-behaviour", "somewhere"], "--env"),
        (["--import-behaviour", "missing_dir", "--env", "hopper"], "not a SAC run folder"),
        (["--import-behaviour", "run", "--env", "hopper", "--screen-episodes", "0"], "positive integer"),
        (["hopper-medium-replay", "--transitions", "100000000"], "is larger"),
    ],
)
def test_bad_input_exits_2_with_one_line(argv, message, capsys):
    with pytest.raises(SystemExit) as exc:  # argparse exits itself; the rest returns the code
        raise SystemExit(main(argv))
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_collect_small_dataset(tmp_path, capsys):
    out = tmp_path / "data.hdf5"
    argv = ["walker-medium", "--transitions", "300", "--seed", "3", "--num-envs", "2", "--quiet", "--out", str(out)]
    assert main(argv) == 0
    captured = capsys.readouterr()
    assert captured.out.strip() == str(out)
    assert "regenerating walker2d-medium" in captured.err and "transitions/s collected" in captured.err
    with h5py.File(out, "r") as f:
        assert f["observations"].shape == (300, 17)
        assert f.attrs["seed"] == 3 and f.attrs["task"] == "walker2d-medium"
