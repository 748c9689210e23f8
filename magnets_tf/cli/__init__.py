"""What the command-line tools (tools/*.py) share: flags defined once, the decode plan
made once from them, the model they run, and one policy for errors and exit codes.

The cli layer sits at the top of the package, beside the tools: it may import every
other part of magnets_tf, and nothing in magnets_tf imports it.
"""
