//! kybernetes-runtime: the Runtime trait and FakeRuntime.
