//! End-to-end tests for Veil live in `tests/`: they drive the real attesters (the
//! configfs-tsm code against the simulator's configfs directory, tss-esapi against
//! swtpm) and the real verifiers, as later issues add real processes on loopback.
