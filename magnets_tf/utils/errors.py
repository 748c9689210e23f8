"""Error text for one-line messages: TensorFlow's errors without their annotations.

TensorFlow prefixes op errors with `{{function_node __wrapped__...}}`, appends
`[Op:SaveV2]`, `[[{{node ...}}]]`, `name: ` and tensor dumps, and spreads them over many
lines. `first_line` keeps the sentence a person needs; `path_in` finds the file a
message is about (not the `/job:localhost/...` device names).
"""
import re

_ANNOTATIONS = re.compile(
    r"\{\{function_node [^}]*\}\}\s*|\s*\[\[\{\{node [^]]*\]\]|\s*\[Op:[^]]*\]|"
    r"\s*name:\s*$")
_TENSOR_DUMP = (" Showing ", " [<", ": [<")
_PATH = re.compile(r"(?<![\w:])(/(?!job:|device:|replica:|task:)[^\s;:,'\"()]+)")


def message_of(error):
    """The text of an exception (TensorFlow's `.message` when it has one)."""
    return getattr(error, "message", None) or str(error) or type(error).__name__


def first_line(text, limit=300):
    """The first non-empty line of `text` (or an exception), without TensorFlow's node,
    op and function annotations and tensor dumps, at most `limit` characters."""
    if isinstance(text, BaseException):
        text = message_of(text)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = _ANNOTATIONS.sub("", lines[0] if lines else "").strip()
    for stop in _TENSOR_DUMP:
        if stop in line:
            line = line[:line.index(stop)]
    return line[:limit]


def path_in(text):
    """The first file path in `text` (an error message), or None."""
    match = _PATH.search(_ANNOTATIONS.sub(" ", str(text)))
    return match.group(1) if match else None
