"""Point the course at a fork: every Colab badge and Colab install cell follows one URL.

    python notebooks/fork.py                                   # print the repository the course points at
    python notebooks/fork.py https://github.com/you/course     # a fork: rewrite pyproject.toml, notebooks, README
    make fork REPO=https://github.com/you/course                # the same

The one place the URL lives is ``pyproject.toml``'s ``[project.urls] Repository``. From it follow:

* each notebook's badge, ``https://colab.research.google.com/github/OWNER/NAME/blob/main/notebooks/<the notebook>``
  (Colab opens the fork's ``main`` branch);
* each setup cell's Colab install, ``%pip install -q "softprompt[colab] @ git+https://github.com/OWNER/NAME"``;
* the README's table of badges and its install line;
* links to the repository's files on GitHub (``https://github.com/OWNER/NAME/blob/...``) in notebooks and README.

The rewrite is a text substitution on the files, so nothing else in a notebook (outputs, metadata) changes.
``tests/test_course_urls.py`` checks that every badge and install URL equals the pyproject value.
"""

from __future__ import annotations

import re
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GITHUB = re.compile(r"^https://github\.com/(?P<owner>[A-Za-z0-9_.-]+)/(?P<name>[A-Za-z0-9_.-]+?)(?:\.git)?/?$")
# what a GitHub repository looks like inside a badge and inside a pip URL (owner/name, no branch, no path)
BADGE = re.compile(r"https://colab\.research\.google\.com/github/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+/blob/main/")
INSTALL = re.compile(r"git\+https://github\.com/[A-Za-z0-9_.-]+/[A-Za-z0-9_.-]+?(?=[\"'\s@\\]|$)")  # \\: JSON's \"
URLS_LINE = re.compile(r'^(Repository\s*=\s*")[^"]*(")', re.MULTILINE)


def course_files(root: Path = ROOT) -> list[Path]:
    """The files that carry badges or install cells: every notebook (series and solutions) and the README."""
    return sorted((root / "notebooks").rglob("*.ipynb")) + [root / "README.md"]


def repository(root: Path = ROOT) -> str:
    """The course's repository URL, from ``pyproject.toml`` (``[project.urls] Repository``)."""
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    try:
        return project["urls"]["Repository"]
    except KeyError:
        raise SystemExit("pyproject.toml has no [project.urls] Repository: add the course's GitHub URL there") from None


def owner_and_name(url: str) -> tuple[str, str]:
    match = GITHUB.match(url.strip())
    if match is None:
        raise SystemExit(f"{url!r} is not a GitHub repository URL: give it as https://github.com/OWNER/NAME")
    return match["owner"], match["name"]


def badge_prefix(url: str) -> str:
    owner, name = owner_and_name(url)
    return f"https://colab.research.google.com/github/{owner}/{name}/blob/main/"


def install_url(url: str) -> str:
    owner, name = owner_and_name(url)
    return f"git+https://github.com/{owner}/{name}"


def rewrite(url: str, root: Path = ROOT) -> list[Path]:
    """Make ``url`` the course's repository everywhere; returns the files that changed."""
    owner, name = owner_and_name(url)
    canonical = f"https://github.com/{owner}/{name}"
    old_owner, old_name = owner_and_name(repository(root))
    links = re.compile(rf"https://github\.com/{re.escape(old_owner)}/{re.escape(old_name)}/(?=blob/|tree/)")
    pyproject = root / "pyproject.toml"
    text = pyproject.read_text()
    new, count = URLS_LINE.subn(rf"\g<1>{canonical}\g<2>", text)
    if count != 1:
        raise SystemExit("pyproject.toml needs exactly one `Repository = \"...\"` line under [project.urls]")
    changed = [pyproject] if new != text else []
    pyproject.write_text(new)
    for path in course_files(root):
        text = path.read_text(encoding="utf-8")
        new = INSTALL.sub(install_url(canonical), BADGE.sub(badge_prefix(canonical), text))
        new = links.sub(f"{canonical}/", new)  # links to files on GitHub (benchmarks, results, solutions)
        if new != text:
            path.write_text(new, encoding="utf-8")
            changed.append(path)
    return changed


def main(argv: list[str]) -> int:
    if not argv:
        print(repository())
        return 0
    if len(argv) != 1:
        raise SystemExit(__doc__)
    changed = rewrite(argv[0])
    print(f"the course now points at {repository()}: {len(changed)} files rewritten")
    for path in changed:
        print("  ", path.relative_to(ROOT))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
