"""A teacher's fork: every Colab badge and install cell follows pyproject.toml's one Repository URL.

``notebooks/fork.py`` (``make fork REPO=...``) rewrites them; here every badge and install URL in the notebooks,
solutions and README is checked equal to that value, and the rewrite is run on a copy of the course.
"""

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "notebooks"))
import fork  # noqa: E402

ANY_BADGE = re.compile(r"https://colab\.research\.google\.com/github/[^\s)\"\\]+")
ANY_INSTALL = re.compile(r"git\+https?://[^\s\"'\\]+")
ANY_FILE_LINK = re.compile(r"https://github\.com/[^/\s]+/[^/\s]+/(?:blob|tree)/")


def urls(root: Path) -> tuple[list[tuple[str, str]], ...]:
    """(file, URL) for every badge, every install URL and every link to a file on GitHub in the course's files."""
    badges, installs, links = [], [], []
    for path in fork.course_files(root):
        text = path.read_text(encoding="utf-8")
        badges += [(path.name, url) for url in ANY_BADGE.findall(text)]
        installs += [(path.name, url) for url in ANY_INSTALL.findall(text)]
        links += [(path.name, url) for url in ANY_FILE_LINK.findall(text)]
    return badges, installs, links


def assert_course_points_at(root: Path, repository: str) -> None:
    badges, installs, links = urls(root)
    notebooks = [p for p in fork.course_files(root) if p.suffix == ".ipynb"]
    assert len(installs) >= len(notebooks), "every notebook's setup cell installs from the repository on Colab"
    assert len(badges) >= 2 * len([p for p in notebooks if p.parent.name == "notebooks"]) - 1
    wrong = [(f, u) for f, u in badges if not u.startswith(fork.badge_prefix(repository) + "notebooks/")]
    wrong += [(f, u) for f, u in installs if u != fork.install_url(repository)]
    wrong += [(f, u) for f, u in links if not u.startswith(repository.removesuffix(".git") + "/")]
    assert not wrong, f"these do not point at {repository} (run `make fork REPO={repository}`): {wrong[:5]}"
    for name, url in badges:  # each badge opens a notebook that exists
        assert (root / url.removeprefix(fork.badge_prefix(repository))).is_file(), (name, url)


def test_the_repository_lives_in_pyproject():
    assert fork.owner_and_name(fork.repository()) == ("softprompt-edu", "softprompt")


def test_every_badge_and_install_url_equals_the_pyproject_value():
    assert_course_points_at(ROOT, fork.repository())


@pytest.fixture
def course_copy(tmp_path):
    copy = tmp_path / "course"
    shutil.copytree(ROOT / "notebooks", copy / "notebooks", ignore=shutil.ignore_patterns(".ipynb_checkpoints"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, copy / name)
    return copy


def test_the_fork_target_rewrites_every_url(course_copy):
    before = {p: p.read_text(encoding="utf-8") for p in fork.course_files(course_copy)}
    changed = fork.rewrite("https://github.com/a-teacher/nlp-course-2027.git", root=course_copy)
    assert fork.repository(course_copy) == "https://github.com/a-teacher/nlp-course-2027"
    assert_course_points_at(course_copy, "https://github.com/a-teacher/nlp-course-2027")
    assert len(changed) == 1 + len(before)  # pyproject, every notebook and the README
    for path, text in before.items():  # only the URLs changed: outputs, metadata and the rest are untouched
        after = path.read_text(encoding="utf-8")
        assert "softprompt-edu" not in after
        assert len(after.splitlines()) == len(text.splitlines())
    fork.rewrite("https://github.com/softprompt-edu/softprompt", root=course_copy)  # and back, byte for byte
    assert all(p.read_text(encoding="utf-8") == text for p, text in before.items())


def test_the_fork_target_refuses_what_is_not_a_github_repository(course_copy):
    for bad in ("github.com/a/b", "https://gitlab.com/a/b", "https://github.com/a", "https://github.com/a/b/tree/x"):
        with pytest.raises(SystemExit, match="https://github.com/OWNER/NAME"):
            fork.rewrite(bad, root=course_copy)
    assert fork.repository(course_copy) == fork.repository()  # nothing was written


def test_make_fork_runs_the_script():
    make = (ROOT / "Makefile").read_text()
    assert re.search(r"^fork:.*\n\t.*notebooks/fork\.py \$\(REPO\)", make, re.M)
    out = subprocess.run([sys.executable, str(ROOT / "notebooks" / "fork.py")], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == fork.repository()
