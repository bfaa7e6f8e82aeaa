"""Small ONNX models built with the ``onnx`` package, for tests and demos (nothing downloaded).

``brightest_spot_detector(path, width, height, box=20, classes=2)`` writes a detector whose
output depends on the image: one YOLO-style row ``[cx, cy, w, h, objectness, c0, c1...]``
(shape [N, 1, 5 + classes]; N is 1, or any with ``dynamic_batch``) centred ``box / 2`` right and below the brightest pixel (the
first in row-major order), objectness = that pixel's mean channel value (0..1 after the
plugin's 1/255 scaling), class 0 scored 1. A white square of side ``box`` on a dark
background is therefore detected exactly.

``sleep_model`` is not possible in pure ONNX; use a plugin subclass to simulate latency.
"""
from __future__ import annotations


def brightest_spot_detector(path: str, width: int = 64, height: int = 48, box: int = 20,
                            classes: int = 2, dynamic_batch: bool = False) -> str:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    def const(name: str, value: object, dtype: object = np.float32) -> onnx.NodeProto:
        return helper.make_node("Constant", [], [name], value=numpy_helper.from_array(np.asarray(value, dtype=dtype), name))

    nodes = [
        const("axes_c", [1], np.int64),
        helper.make_node("ReduceMean", ["image", "axes_c"], ["gray"], keepdims=0),      # [1, H, W]
        const("flat_shape", [-1, height * width], np.int64),
        helper.make_node("Reshape", ["gray", "flat_shape"], ["flat"]),                # [1, H*W]
        helper.make_node("ArgMax", ["flat"], ["idx"], axis=1, keepdims=1),            # [1, 1] int64
        helper.make_node("ReduceMax", ["flat", "axes_c"], ["peak"], keepdims=1),      # [1, 1]
        helper.make_node("Cast", ["idx"], ["idxf"], to=TensorProto.FLOAT),
        const("w", [[float(width)]]),
        helper.make_node("Div", ["idxf", "w"], ["rowf"]),
        helper.make_node("Floor", ["rowf"], ["row"]),
        helper.make_node("Mul", ["row", "w"], ["rowstart"]),
        helper.make_node("Sub", ["idxf", "rowstart"], ["col"]),
        const("half", [[box / 2.0]]),
        helper.make_node("Add", ["col", "half"], ["cx"]),
        helper.make_node("Add", ["row", "half"], ["cy"]),
        const("zero", [[0.0]]),
        helper.make_node("Mul", ["cx", "zero"], ["zeros"]),                             # [N, 1]
        const("bw", [[float(box)]]),
        helper.make_node("Add", ["zeros", "bw"], ["bwn"]),                              # [N, 1]
        const("cls", [[1.0] + [0.0] * (classes - 1)]),
        helper.make_node("Add", ["zeros", "cls"], ["clsn"]),                            # [N, C]
        helper.make_node("Concat", ["cx", "cy", "bwn", "bwn", "peak", "clsn"], ["row7"], axis=1),  # [N, 5+C]
        const("out_shape", [-1, 1, 5 + classes], np.int64),
        helper.make_node("Reshape", ["row7", "out_shape"], ["detections"]),
    ]
    graph = helper.make_graph(
        nodes, "brightest_spot",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["N" if dynamic_batch else 1, 3, height, width])],
        [helper.make_tensor_value_info("detections", TensorProto.FLOAT, ["N" if dynamic_batch else 1, 1, 5 + classes])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, path)
    return path


def frame_with_square(width: int, height: int, x: int, y: int, box: int = 20, encoding: str = "rgb8"):
    """A dark uint8 frame with a white ``box`` x ``box`` square whose top-left corner is (x, y)."""
    import numpy as np

    img = np.full((height, width, 3), 20, np.uint8)
    img[max(0, y):max(0, y + box), max(0, x):max(0, x + box)] = 255
    return img


__all__ = ["brightest_spot_detector", "frame_with_square"]
