"""The bridge to a real cluster: the mesh as Kubernetes manifests (`export`) and manifests as a
mesh (`importer`). Both are pure: text in, text and diagnostics out; the CLI does the files."""
