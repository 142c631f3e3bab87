# mmdeploy: end-to-end detector (backbone, head, decoding and NMS) as one ONNX graph for ONNX Runtime,
# dynamic batch and image size. The export step copies the model's own test_cfg (score threshold,
# NMS IoU, max detections) into post_processing so the ONNX model decodes exactly as PyTorch does.
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['input'],
    output_names=['dets', 'labels'],
    input_shape=None,
    optimize=True,
    dynamic_axes={
        'input': {0: 'batch', 2: 'height', 3: 'width'},
        'dets': {0: 'batch', 1: 'num_dets'},
        'labels': {0: 'batch', 1: 'num_dets'},
    },
)
codebase_config = dict(
    type='mmdet',
    task='ObjectDetection',
    model_type='end2end',
    post_processing=dict(
        score_threshold=0.05,
        confidence_threshold=0.005,
        iou_threshold=0.5,
        max_output_boxes_per_class=200,
        pre_top_k=5000,
        keep_top_k=100,
        background_label_id=-1,
    ),
)
backend_config = dict(type='onnxruntime')

# How the deployed backends (admlops.backends) build from the graph above. Every backend builds from this one
# graph (its NonMaxSuppression is the standard ONNX op: TensorRT maps it onto its own NMS layer), so export and
# export-trt read these settings from the deploy.py that export writes beside end2end.onnx.
# input_shapes follows mmdeploy's backend_config.model_inputs convention: TensorRT's optimization profile, and
# the range every calibration batch must fit. Export sets H and W from the model's test pipeline when it pads
# to a fixed size (rtmdet_tiny_kitti: 640x192); opt is one image (what a deployed detector serves), max covers
# the evaluation's val batches.
build_settings = dict(
    input_shapes=dict(input=dict(min_shape=[1, 3, 192, 640], opt_shape=[1, 3, 192, 640], max_shape=[8, 3, 192, 640])),
    tensorrt=dict(max_workspace_size=1 << 30),  # bytes of scratch memory TensorRT's tactics may use
    # int8_cpu: the int8 kernels of the CPUs the model will run on (admlops.cpu): 'auto' = the build machine's;
    # 'avx2' (or 'avx512') for a fleet without VNNI turns the overflow fix (7-bit weights) on
    openvino=dict(int8_cpu='auto'),
    onnxruntime=dict(int8_cpu='auto'),
)
