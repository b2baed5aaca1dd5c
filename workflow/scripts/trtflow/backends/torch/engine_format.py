"""The version of the torch engine folder's layout, written by the build and checked by the runtime."""

FORMAT_VERSION = 2
