package io.lightmesh.cli;

/** A wrong command line found after parsing (values that do not fit together): the message, the usage hint, exit 2. */
final class UsageException extends RuntimeException {
    UsageException(String message) { super(message); }
}
