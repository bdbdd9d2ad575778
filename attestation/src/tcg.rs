//! TCG PC-Client crypto-agile event log parsing and replay.
