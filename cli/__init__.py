"""The `keye` command: the only module that imports every app (api, workers, streams, training)."""
