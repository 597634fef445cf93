"""The text a saved notebook shows in its outputs (for tests that read committed notebooks)."""

TEXT_KINDS = ("text/plain", "text/markdown", "text/html")


def output_texts(nb: dict, tracebacks: bool = False):
    """``(cell index, text)`` for every stream and text-like display output (and tracebacks if asked)."""
    for i, cell in enumerate(nb["cells"]):
        for out in cell.get("outputs", []):
            texts = [out.get("text", "")] + [out.get("data", {}).get(k, "") for k in TEXT_KINDS]
            if tracebacks:
                texts += out.get("traceback", [])
            for t in texts:
                yield i, "".join(t) if isinstance(t, list) else t
