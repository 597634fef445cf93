"""softprompt.progress: in Jupyter a bar is one text output updated in place (a saved notebook shows its
last state); elsewhere it is tqdm on stderr."""

import softprompt.progress as progress


def test_outside_jupyter_is_plain_tqdm(capsys):
    for _ in progress.progress_bar(range(3), desc="work"):
        pass
    err = capsys.readouterr().err
    assert "work" in err and "3/3" in err


def test_in_jupyter_the_last_state_is_one_text_output(monkeypatch):
    shown = []

    class Handle:
        def update(self, obj):
            shown[-1] = repr(obj)

    def display(obj, display_id=False):
        assert display_id
        shown.append(repr(obj))
        return Handle()

    import IPython.display

    monkeypatch.setattr(progress, "in_notebook", lambda: True)
    monkeypatch.setattr(IPython.display, "display", display)
    for _ in progress.progress_bar(range(4), desc="prompt tuning", mininterval=0):
        pass
    assert len(shown) == 1, "one output, updated in place"
    assert shown[0].startswith("prompt tuning: 100%") and "4/4" in shown[0] and "\r" not in shown[0]
