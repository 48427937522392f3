"""Builder: trained checkpoint -> ONNX engine with KV cache (fp32 / int8) -> quality gate -> Triton model repository.

``kefu build`` runs it by hand; the service runs it on ``model.trained``. The engine code (``engine.py``) is the
same for the gate, the benchmark and the Triton python model, so what passed the gate is what is served.
"""
