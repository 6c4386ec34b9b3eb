def test_cli_help_is_fast_and_lists_tasks(run_cli):
    res = run_cli("--help")
    assert res.code == 0 and "train" in res.out and "predict" in res.out
    res = run_cli("train", "--help")
    assert "ner" in res.out and "pos" in res.out
