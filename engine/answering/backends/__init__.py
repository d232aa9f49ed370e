"""One backend a file: each defines its Backend and a factory named FACTORY (crit.engine.answering.registry).

A factory knows its backend's identity without starting it, and starts it in `create()`;
heavy imports (torch, vLLM, Ray, llama.cpp) stay inside `create()` so that listing the
backends imports none of them.
"""
