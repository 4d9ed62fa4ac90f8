"""The model toolchain: builds the ONNX files the device runs (control node only, never on the device).

It needs the ``export`` extra (torch, ultralytics, sam2, onnx) which the device runtime must not
carry, so every module here imports those lazily, inside the functions that need them: importing
``rvm_edge.toolchain.cli`` from the runtime CLI stays cheap and works without torch.

Modules, one job each:

- ``offline``   make ultralytics and onnxruntime work with no network (fonts, env switches)
- ``synth``     synthetic intake-camera frames with YOLO labels (numpy + OpenCV only)
- ``train``     train a YOLO11n from its architecture file on a synthetic dataset
- ``yolo_export`` ultralytics ``.pt`` -> ONNX (the standard ultralytics layout)
- ``quantize``  static INT8 of a detector ONNX with the detection head kept in float
- ``evaluate``  mAP50 of an ONNX detector on a labelled split, run with onnxruntime
- ``sam2_export`` SAM2 checkpoint (or seeded random weights) -> encoder + decoder ONNX
- ``lab``       the lab-model recipe: data, training, export, INT8, metrics, manifest
- ``cli``       ``rvm-edge models export``
"""
