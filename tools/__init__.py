"""The command-line tools, one absl program per module.

Run them as `python tools/<name>.py ...` from a checkout, or through the console scripts
the package installs (`magnets-<name>`, e.g. `magnets-sample`), which import this folder
as the package `magnets_tf_tools` and call each module's `run()`. What the tools share
lives in `magnets_tf.cli`; the tools do not import each other.
"""
