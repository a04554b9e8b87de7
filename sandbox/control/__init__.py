"""The control plane: config store, file watcher, compile, push to sidecars, mesh CA."""
