//! End-to-end test support lives in `tests/common`; the tests are in `tests/*.rs`.
