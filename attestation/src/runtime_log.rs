//! Veil runtime event log (JSON), replayed against RTMR / PCR values.
