//! Bundle format (issue 3).
#![no_std]
