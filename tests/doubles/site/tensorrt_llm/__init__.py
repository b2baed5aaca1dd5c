"""TEST DOUBLE for the tensorrt_llm package (see tests/doubles/README.md)."""
import os

__version__ = os.environ.get("TRTFLOW_DOUBLE_TRTLLM_VERSION", "0.8.0")
