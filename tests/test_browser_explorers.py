"""The widget explorers in a real browser: JupyterLab and Chromium, driven as a student would.

JupyterLab runs headless on a free port with a token, on a notebook made here: a first cell builds on a tiny
model the names the explorer cells use (tests/explorer_inputs.py), then come the explorer cells of notebooks
03 and 05, read from the notebooks as they stand. Chromium (Debian's package, driven by Playwright: its own
browser download is not reachable here) opens the notebook, runs every cell, moves the step slider (a key,
then a drag), picks a virtual token and a task. After each move the table on the page must be the table the
library computes for that state (``snaps.neighbors``, ``nearest_tokens``), rendered by the library, and the
picture the explorer's PNG of that state.

No Chromium: the test is skipped with a reason that says so, and the run's summary repeats it in a line of its
own (tests/conftest.py), never a silent skip. `.ci/run` installs Debian's chromium when it can.
"""

import base64
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import nbformat
import pytest
import torch
from explorer_inputs import K, SOURCES, notebook_03, notebook_05

import softprompt as sp

ROOT = Path(__file__).resolve().parents[1]
NO_BROWSER = "browser test did NOT run: no Chromium (install the Debian package chromium)"
CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
EXPLORER_CELLS = {  # notebook -> the call that builds its explorer
    "03_reading_learned_prompts.ipynb": "sp.PromptExplorer(",
    "05_multitask_prompt_tuning.ipynb": "sp.TaskExplorer(",
}
LAB_SETTINGS = {  # the user's settings a fresh JupyterLab reads: no kernel dialog, no news toast over the page
    "@jupyterlab/notebook-extension/tracker.jupyterlab-settings": {"autoStartDefaultKernel": True},
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False},
}
WAIT_MS = 120_000  # the kernel imports torch and transformers: seconds on a quiet machine, more on a busy one


def find_chromium() -> str | None:
    """$CHROMIUM, else the first Chromium on PATH."""
    if os.environ.get("CHROMIUM"):
        return os.environ["CHROMIUM"]
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


def explorer_cell(notebook: str, call: str) -> str:
    """The source of the code cell of ``notebooks/<notebook>`` that makes its explorer."""
    cells = json.loads((ROOT / "notebooks" / notebook).read_text(encoding="utf-8"))["cells"]
    found = ["".join(c["source"]) for c in cells if c["cell_type"] == "code" and call in "".join(c["source"])]
    assert len(found) == 1, f"{notebook}: expected one code cell with {call!r}, found {len(found)}"
    return found[0]


def write_notebook(folder: Path) -> Path:
    shutil.copy(Path(__file__).with_name("explorer_inputs.py"), folder / "explorer_inputs.py")
    cell = nbformat.v4.new_code_cell
    nb = nbformat.v4.new_notebook(cells=[
        nbformat.v4.new_markdown_cell("Made by tests/test_browser_explorers.py: notebooks 03's and 05's explorers."),
        cell("import softprompt as sp\nfrom explorer_inputs import K, SOURCES, notebook_03, notebook_05\n\n"
             "snaps, tokenizer, task = notebook_03()"),
        cell(explorer_cell("03_reading_learned_prompts.ipynb", EXPLORER_CELLS["03_reading_learned_prompts.ipynb"])),
        cell("student, tokenizer, sources = notebook_05()"),
        cell(explorer_cell("05_multitask_prompt_tuning.ipynb", EXPLORER_CELLS["05_multitask_prompt_tuning.ipynb"])),
    ])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    path = folder / "explorers.ipynb"
    nbformat.write(nb, path)
    return path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _request(url: str, method: str = "GET") -> int:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=5) as r:
        return r.status


def _our_processes(marker: str) -> list[int]:
    """Ids of processes whose command line names ``marker`` (our temporary folder): the server's kernels."""
    pids = []
    for proc in Path("/proc").iterdir():
        try:
            if proc.name.isdigit() and marker in (proc / "cmdline").read_bytes().decode(errors="replace"):
                pids.append(int(proc.name))
        except OSError:
            pass
    return [p for p in pids if p != os.getpid()]


@pytest.fixture(scope="module")
def chromium():
    path = find_chromium()
    if path is None:
        pytest.skip(NO_BROWSER)
    return path


@pytest.fixture(scope="module")
def lab(chromium, tmp_path_factory):
    """A JupyterLab server on the notebook: ``(url of the notebook with the token, the server's log)``."""
    folder = tmp_path_factory.mktemp("browser_lab")
    write_notebook(folder)
    home = folder / ".jupyter-home"  # config, data, runtime, settings: nothing of the user's, nothing left behind
    env = dict(os.environ, HF_HUB_OFFLINE="1", TOKENIZERS_PARALLELISM="false", PYTHONHASHSEED="0",
               JUPYTER_CONFIG_DIR=str(home / "config"), JUPYTER_DATA_DIR=str(home / "data"),
               JUPYTER_RUNTIME_DIR=str(home / "runtime"), JUPYTERLAB_SETTINGS_DIR=str(home / "settings"),
               JUPYTERLAB_WORKSPACES_DIR=str(home / "workspaces"), IPYTHONDIR=str(home / "ipython"))
    for name, settings in LAB_SETTINGS.items():
        (home / "settings" / name).parent.mkdir(parents=True, exist_ok=True)
        (home / "settings" / name).write_text(json.dumps(settings))
    port, token = free_port(), secrets.token_hex(16)
    log = open(folder / "server.log", "w")  # closed in the finalizer
    server = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--ServerApp.ip=127.0.0.1", f"--ServerApp.port={port}",
         "--ServerApp.port_retries=0", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={folder}",
         "--ServerApp.allow_root=True",  # CI runs as root
         "--LabApp.check_for_updates_class=jupyterlab.NeverCheckForUpdate"],
        cwd=folder, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
    )
    base, server_log = f"http://127.0.0.1:{port}", folder / "server.log"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"JupyterLab exited ({server.returncode}):\n{server_log.read_text()}"
            try:
                if _request(f"{base}/api/status?token={token}") == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, f"JupyterLab not up in 60 s:\n{server_log.read_text()}"
            time.sleep(0.5)
        yield f"{base}/lab/tree/explorers.ipynb?token={token}", server_log
    finally:
        try:  # the server shuts its kernels down, then itself
            _request(f"{base}/api/shutdown?token={token}", method="POST")
            server.wait(timeout=20)
        except (OSError, subprocess.TimeoutExpired):
            pass
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGTERM)
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait()
        for pid in _our_processes(str(home)):  # a kernel the shutdown missed (its command line names our folder)
            os.kill(pid, signal.SIGKILL)
        log.close()


@pytest.fixture(scope="module")
def page(chromium, lab):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True)
        try:
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.set_default_timeout(WAIT_MS)
            yield page
        finally:
            browser.close()


# --------------------------------------------------------------------------- reading the page

TABLE_TEXT = """el => {  // a NeighborTable's HTML -> {title, rows: [[label, cell, ...], ...]}, whitespace collapsed
    const t = s => s.textContent.replace(/\\s+/g, " ").trim();
    return {title: el.querySelector("p") ? t(el.querySelector("p")) : null,
            rows: [...el.querySelectorAll("tbody tr")].map(tr => [...tr.children].map(t))};
}"""

IMAGE_BYTES = """async img => {  // the bytes behind the <img> an ipywidgets Image draws (a blob: URL)
    const bytes = new Uint8Array(await (await fetch(img.src)).arrayBuffer());
    let s = "";
    for (const b of bytes) s += String.fromCharCode(b);
    return btoa(s);
}"""


def library_table(page, table) -> dict:
    """What the page shows for the library's own rendering of ``table`` (its ``_repr_html_``), read alike."""
    return page.evaluate(f"html => ({TABLE_TEXT})(new DOMParser().parseFromString(html, 'text/html').body)",
                         table._repr_html_())


def shown_table(explorer) -> dict:
    return explorer.locator(".softprompt-table").evaluate(TABLE_TEXT)


def wait_for_table(page, explorer, expected: dict, what: str) -> None:
    """Wait (a few seconds: the kernel computes, the view redraws) until the drawn table is ``expected``."""
    deadline = time.monotonic() + 30
    while (shown := shown_table(explorer)) != expected and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert shown == expected, f"after {what}, the page shows\n{shown}\nbut the library computes\n{expected}"


def shown_png(explorer) -> bytes:
    return base64.b64decode(explorer.locator("img.softprompt-image").evaluate(IMAGE_BYTES))


def wait_for_png(page, explorer, expected: bytes, what: str) -> None:
    """Wait until the drawn picture is ``expected`` (the explorer sets the table first, then the picture)."""
    deadline = time.monotonic() + 30
    while (shown := shown_png(explorer)) != expected and time.monotonic() < deadline:
        page.wait_for_timeout(200)
    assert shown == expected, f"after {what}, the picture is not the explorer's PNG of that state"


def run_all_cells(page, url: str, log: Path) -> None:
    page.goto(url)
    page.locator(".jp-Notebook").wait_for()
    page.locator(".jp-StatusBar-TextItem", has_text=re.compile(r"\(ipykernel\) \| Idle$")).wait_for()  # kernel up
    page.locator(".lm-MenuBar-itemLabel", has_text=re.compile(r"^Run$")).click()
    page.locator(".lm-Menu-itemLabel", has_text=re.compile(r"^Run All Cells$")).click()
    deadline = time.monotonic() + WAIT_MS / 1000
    while page.locator(".softprompt-explorer").count() < 2:
        errors = page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr'],"
                              ".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
        if errors.count() or time.monotonic() > deadline:
            shot = log.with_name("page.png")
            page.screenshot(path=str(shot))
            texts = "\n".join(errors.all_inner_texts())
            pytest.fail(f"the explorers did not appear (screenshot {shot}); cell errors:\n{texts}\n"
                        f"server log:\n{log.read_text()[-3000:]}")
        page.wait_for_timeout(500)


# --------------------------------------------------------------------------- the test


def test_explorers_redraw_what_the_library_computes(page, lab):
    url, log = lab
    snaps, tokenizer, task = notebook_03()  # the same snapshots the kernel trains (tests/explorer_inputs.py)
    student, _, sources = notebook_05()
    here = sp.PromptExplorer(snaps, tokenizer, k=K, highlight_words=task.label_words)  # as notebook 03's cell
    last = len(snaps) - 1

    run_all_cells(page, url, log)
    prompt_ex, task_ex = page.locator(".softprompt-explorer").all()

    # PromptExplorer: it opens at the last snapshot
    wait_for_table(page, prompt_ex, library_table(page, snaps.neighbors(last, tokenizer, k=K)), "running the cells")
    assert prompt_ex.locator(".widget-readout").inner_text() == str(snaps.steps[last])
    wait_for_png(page, prompt_ex, here.png(), "running the cells")

    # one key on the slider's handle: the snapshot before
    handle = prompt_ex.locator(".softprompt-step .noUi-handle")
    expected = library_table(page, snaps.neighbors(last - 1, tokenizer, k=K))
    assert expected != shown_table(prompt_ex)  # the move must show
    handle.focus()
    page.keyboard.press("ArrowLeft")
    wait_for_table(page, prompt_ex, expected, f"ArrowLeft on the step slider (to step {snaps.steps[last - 1]})")
    assert prompt_ex.locator(".widget-readout").inner_text() == str(snaps.steps[last - 1])

    # a drag of the handle to the slider's left end: step 0, where the TEXT init still reads as its words
    track = prompt_ex.locator(".softprompt-step .noUi-target").bounding_box()
    box = handle.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(track["x"] - 20, box["y"] + box["height"] / 2, steps=8)
    page.mouse.up()
    step0 = snaps.neighbors(0, tokenizer, k=K)
    assert step0.tokens(0) != snaps.neighbors(last - 1, tokenizer, k=K).tokens(0)  # the move must show
    wait_for_table(page, prompt_ex, library_table(page, step0), "dragging the step slider to its left end (step 0)")
    assert prompt_ex.locator(".widget-readout").inner_text() == str(snaps.steps[0])
    here.step_slider.value = 0
    wait_for_png(page, prompt_ex, here.png(), "dragging the step slider to step 0")

    # another virtual token: one row, v1 at step 0
    prompt_ex.locator(".softprompt-token select").select_option(label="v1")
    wait_for_table(page, prompt_ex, library_table(page, step0.select([1])), "picking virtual token v1 at step 0")
    here.token_selector.value = 1
    wait_for_png(page, prompt_ex, here.png(), "picking virtual token v1 at step 0")

    # TaskExplorer: the first task, then the last one
    there = sp.TaskExplorer(student, tokenizer, task_names=SOURCES,  # as notebook 05's cell
                            highlight_words=[w for t in sources for w in t.label_words])
    first, final = (sp.nearest_tokens(student, None, tokenizer, k=5, task_id=k) for k in (0, len(SOURCES) - 1))
    assert not torch.equal(first.ids, final.ids)  # the move must show
    for k, expected in ((0, first), (len(SOURCES) - 1, final)):
        expected.title = SOURCES[k]
        if k:
            task_ex.locator(".softprompt-task select").select_option(label=SOURCES[k])
        wait_for_table(page, task_ex, library_table(page, expected), f"picking task {SOURCES[k]!r}")
        there.task_selector.value = k
        wait_for_png(page, task_ex, there.png(), f"picking task {SOURCES[k]!r}")
