"""rvm-toolchain: builds the ONNX files the device runs (control node only, never on the device).

A distribution of its own beside the device runtime: it depends on ``rvm-edge`` (preprocessing,
the manifest format, the benchmark helpers), never the other way round, and the device never
installs it. torch, ultralytics and sam2 are imported lazily, inside the functions that need
them, so ``rvm-toolchain --help`` and the generator (numpy + OpenCV) run without them.

Modules, one job each:

- ``offline``   make ultralytics and onnxruntime work with no network (fonts, env switches)
- ``synth``     synthetic intake-camera frames with YOLO labels (numpy + OpenCV only)
- ``train``     train a YOLO11n from its architecture file on a synthetic dataset
- ``yolo_export`` ultralytics ``.pt`` -> ONNX (the standard ultralytics layout)
- ``quantize``  static INT8 of a detector ONNX with the detection head kept in float
- ``evaluate``  mAP50 of an ONNX detector on a labelled split, run with onnxruntime
- ``sam2_export`` SAM2 checkpoint (or seeded random weights) -> encoder + decoder ONNX
- ``lab``       the lab-model recipe: data, training, export, INT8, metrics, manifest
- ``export_cli`` ``rvm-toolchain export``
- ``compare``   ``rvm-toolchain compare-ultralytics``: ours vs ultralytics on the same frames
- ``cli``       ``rvm-toolchain``: the sub-commands above
"""
