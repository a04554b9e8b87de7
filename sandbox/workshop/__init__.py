"""Workshop mode: `sandbox demo bookinfo` walks through the seed talk's demos step by step.

- steps.py: the steps as data (rules, traffic, what to look at, console page, check)
- checks.py, traffic.py: each step's traffic and the outcome `--auto` checks
- meshes.py: the meshes it plays on (found running, or started the one way sandbox starts them)
- runner.py: the walk itself; show.py: YAML in colour, console pages
"""
