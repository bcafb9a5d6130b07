"""With no model found, the CLI says how to give one in its own terms: the flag, not the API's argument."""

from __future__ import annotations

import pytest

from inference.cli import main


@pytest.mark.parametrize(("command", "kind"), [("classify", "classifier"), ("summarize", "summarizer")])
def test_a_missing_model_is_reported_with_the_flag_that_names_one(command, kind, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # no models/<kind> here
    monkeypatch.delenv(f"KHABAR_{kind.upper()}", raising=False)

    code = main([command, "خبر امروز"])

    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.splitlines() == [err]
    assert f"no {kind} model: pass --{kind} DIR, set KHABAR_{kind.upper()}" in err
    assert "model=" not in err


def test_another_distribution_owning_inference_is_named_at_start_up(monkeypatch, tmp_path, capsys):
    from importlib import metadata

    from inference.cli import main

    owners = {"inference": ["khabar", "inference"], "training": ["khabar"]}
    monkeypatch.setattr(metadata, "packages_distributions", lambda: owners)

    main(["classify", "خبر", "--classifier", str(tmp_path / "none")])

    warning = capsys.readouterr().err.splitlines()[0]
    assert warning.startswith("khabar: warning: 'inference' is also installed by inference")
