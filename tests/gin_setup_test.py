import re
from pathlib import Path

from magnets_tf import gin_setup

ROOT = Path(__file__).resolve().parents[1]


def test_every_configurable_module_is_registered_before_parsing():
    defining = set()
    for path in (ROOT / "magnets_tf").rglob("*.py"):
        if path.name == "gin_setup.py":
            continue
        if re.search(r"@gin\.configurable|gin\.external_configurable", path.read_text()):
            rel = path.relative_to(ROOT).with_suffix("")
            defining.add(".".join(rel.parts))
    assert defining == set(gin_setup.CONFIGURABLE_MODULES)


def test_tools_parse_through_parse_gin():
    offenders = [p.name for p in (ROOT / "tools").glob("*.py")
                 if "gin.parse_config_files_and_bindings(" in p.read_text()]
    assert not offenders, f"parse gin with magnets_tf.gin_setup.parse_gin in {offenders}"
