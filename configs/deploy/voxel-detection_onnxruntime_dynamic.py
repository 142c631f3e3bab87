# mmdeploy: a 3D voxel detector (PointPillars) through mmdeploy's mmdet3d VoxelDetection task, for ONNX Runtime.
# Voxelization stays outside the graph (the model's own data preprocessor, mmcv's Voxelization, runs before it); the
# graph takes one scan's pillars (voxels [V, max_points, 4], num_points [V], coors [V, 4] = batch, z, y, x) with V
# dynamic, runs the pillar encoder, the scatter to the BEV canvas, backbone, neck and head, and outputs the head's raw
# maps of its one level; the head's own predict_by_feat (anchor decoding, NMS with the model's test_cfg) decodes them
# after it, as in PyTorch. One scan per call: the scatter is traced for batch 1 (mmdeploy's rewriter).
onnx_config = dict(
    type='onnx',
    export_params=True,
    keep_initializers_as_inputs=False,
    opset_version=11,
    save_file='end2end.onnx',
    input_names=['voxels', 'num_points', 'coors'],
    output_names=['cls_score0', 'bbox_pred0', 'dir_cls_pred0'],
    input_shape=None,
    optimize=True,
    dynamic_axes={
        'voxels': {0: 'voxels_num'},
        'num_points': {0: 'voxels_num'},
        'coors': {0: 'voxels_num'},
    },
)
codebase_config = dict(type='mmdet3d', task='VoxelDetection', model_type='end2end')
backend_config = dict(type='onnxruntime')
