"""The version of the torch engine folder's layout, written by the build and checked by the runtime.

3: the build flags include weight-only quantization; a weight-only engine stores int8 linears with their
`.per_channel_scale` beside them."""

FORMAT_VERSION = 3
