//! QEMU boot harness for the system tests.
