"""The one section writer of the benchmark scripts: a document holds each script's section
between `<!-- NAME -->` and `<!-- /NAME -->`; writing replaces it, or appends it the first time."""

import os


def replace_section(text, name, body):
    """`text` with the section `name` holding `body` (markers included)."""
    start, end = f"<!-- {name} -->", f"<!-- /{name} -->"
    block = f"{start}\n{body.rstrip()}\n{end}"
    if start in text and end in text:
        return text[:text.index(start)] + block + text[text.index(end) + len(end):]
    return text.rstrip() + "\n\n" + block + "\n"


def write_section(path, name, body):
    """Writes section `name` of the document at `path`."""
    text = open(path).read() if os.path.exists(path) else ""
    with open(path, "w") as f:
        f.write(replace_section(text, name, body))
