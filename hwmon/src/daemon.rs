//! The daemon: runs collectors, folds observations into the model, feeds sinks.
