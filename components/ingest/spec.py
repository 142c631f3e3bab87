"""What a dataset definition says about recorded drives (its ``recording`` section): which topic is which sensor,
the frames of the ego pose, the synchronisation tolerance and each screening rule's threshold::

    recording:
      lidar: {topic: /sensing/lidar/top/points, intensity_field: intensity}
      cameras:                      # name -> image topic (Image or CompressedImage) and CameraInfo topic
        front: {image: /sensing/camera/front/image_raw/compressed, info: /sensing/camera/front/camera_info}
      frames: {world: map, base: base_link}   # the ego pose: base_link in map, from /tf
      sync_tolerance: 0.05          # seconds between a camera's image and the LiDAR scan it is paired with
      screening:                    # a rule set to false is off; a rule left out takes the defaults below
        blur: {min_relative_sharpness: 0.35}   # variance of the Laplacian below 0.35x the camera's median
        exposure: {min_mean: 25, max_mean: 230, max_clipped: 0.4}  # mean grey level; share of pixels at 0/255
        duplicate: {max_difference: 1.5}      # mean |grey difference| to the previous kept frame, 8-bit levels
        standstill: {min_speed: 0.5, keep_every: 5.0}  # m/s; while standing, one frame per 5 s is kept

Why the blur threshold is relative: the variance of the Laplacian depends on the lens, the resolution and the
scene (a motorway at dusk has little texture), so an absolute value tuned on one camera drops everything from
another; against the camera's own median over the drive it finds the frames blurred relative to that camera's
normal (motion blur, a smeared lens), whatever the camera. The exposure and duplicate thresholds are in 8-bit grey
levels, which mean the same on every camera.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from admlops.definition import DatasetDefinition
from admlops.errors import InputError

DEFAULT_RULES = {
    "blur": {"min_relative_sharpness": 0.35},
    "exposure": {"min_mean": 25.0, "max_mean": 230.0, "max_clipped": 0.4},
    "duplicate": {"max_difference": 1.5},
    "standstill": {"min_speed": 0.5, "keep_every": 5.0},
}


@dataclass(frozen=True)
class Camera:
    name: str
    image: str
    info: str


@dataclass(frozen=True)
class RecordingSpec:
    lidar: str
    cameras: tuple[Camera, ...]
    world: str
    base: str
    intensity_field: str = "intensity"
    sync_tolerance_ns: int = 50_000_000
    rules: dict = field(default_factory=dict)  # rule -> its thresholds (rules that are off are absent)
    definition: str = ""  # the definition's file, for messages

    def topics(self) -> dict[str, str]:
        """topic -> what it is (``lidar``, ``<camera> image``, ``<camera> info``)."""
        out = {self.lidar: "lidar"}
        for c in self.cameras:
            out[c.image], out[c.info] = f"{c.name} image", f"{c.name} info"
        return out


def recording_spec(definition: DatasetDefinition) -> RecordingSpec:
    """The definition's recording section, checked; a missing or malformed one is an InputError naming the file."""
    raw, path = definition.recording, definition.path
    if not raw:
        raise InputError(path, "no recording section: say which topics are the LiDAR and the cameras "
                         "(recording: {lidar: {topic: ...}, cameras: {NAME: {image: ..., info: ...}}, frames: ...})")

    def fail(key: str, expected: str):
        return InputError(path, f"recording.{key}: expected {expected}")

    lidar = raw.get("lidar")
    if not isinstance(lidar, dict) or not isinstance(lidar.get("topic"), str):
        raise fail("lidar", "{topic: /your/points, intensity_field: intensity}")
    cams = raw.get("cameras")
    if not isinstance(cams, dict) or not cams:
        raise fail("cameras", "a mapping NAME -> {image: TOPIC, info: TOPIC} with at least one camera")
    cameras = []
    for name, c in cams.items():
        if not isinstance(c, dict) or not all(isinstance(c.get(k), str) for k in ("image", "info")):
            raise fail(f"cameras.{name}", "{image: TOPIC, info: TOPIC}")
        if not str(name).replace("_", "").replace("-", "").isalnum():
            raise fail(f"cameras.{name}", "a camera name of letters, digits, '-' and '_'")
        cameras.append(Camera(str(name), c["image"], c["info"]))
    frames = raw.get("frames")
    if not isinstance(frames, dict) or not all(isinstance(frames.get(k), str) for k in ("world", "base")):
        raise fail("frames", "{world: FRAME, base: FRAME} (the ego pose: base in world, from /tf)")
    try:
        tolerance = float(raw.get("sync_tolerance", 0.05))
    except (TypeError, ValueError):
        raise fail("sync_tolerance", f"seconds, got {raw.get('sync_tolerance')!r}") from None
    if not 0 < tolerance <= 1:
        raise fail("sync_tolerance", f"seconds in (0, 1], got {tolerance}")
    screening = raw.get("screening") or {}
    if not isinstance(screening, dict) or set(screening) - set(DEFAULT_RULES):
        raise fail("screening", f"a mapping of rules ({', '.join(DEFAULT_RULES)}), got {screening!r}")
    rules = {}
    for rule, defaults in DEFAULT_RULES.items():
        given = screening.get(rule, {})
        if given is False:
            continue
        if not isinstance(given, dict) or set(given) - set(defaults):
            raise fail(f"screening.{rule}", f"false or a mapping of {', '.join(defaults)}, got {given!r}")
        try:
            values = {k: float(given.get(k, v)) for k, v in defaults.items()}
        except (TypeError, ValueError):
            raise fail(f"screening.{rule}", f"numbers for {', '.join(defaults)}, got {given!r}") from None
        if any(v < 0 for v in values.values()):
            raise fail(f"screening.{rule}", f"non-negative thresholds, got {values}")
        rules[rule] = values
    ex = rules.get("exposure")
    if ex and not (ex["min_mean"] < ex["max_mean"] and ex["max_clipped"] <= 1):
        raise fail("screening.exposure", f"min_mean < max_mean and max_clipped in [0, 1], got {ex}")
    topics = [lidar["topic"]] + [t for c in cameras for t in (c.image, c.info)]
    if len(set(topics)) != len(topics):
        raise fail("cameras", f"a topic for one sensor only, got {topics}")
    return RecordingSpec(lidar["topic"], tuple(cameras), frames["world"], frames["base"],
                         str(lidar.get("intensity_field", "intensity")), int(round(tolerance * 1e9)), rules, path)
