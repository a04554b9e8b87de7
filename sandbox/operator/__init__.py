"""The operator's verbs (`sandbox apply/delete/get/proxy-status/proxy-config/wait`) as library code.

Pure parts (planning an apply, rendering tables, judging sync state) are separate from the small
HTTP client that reads the control plane's API and the sidecars' admin endpoints; the CLI in
sandbox/commands/operator.py only parses options and prints.
"""
