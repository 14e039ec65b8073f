//! RawLog -> ParsedLog: pure functions, no I/O.
