"""clamp2-engine in the tools people already use: an MCP server (:mod:`.mcp_server`), an ``llm`` plugin
(:mod:`.llm_plugin`) and a LangChain ``Embeddings`` (:mod:`.langchain`). An outer layer, like ``cli`` and
``serve``: each wires the library for one tool, and the library never imports them."""
