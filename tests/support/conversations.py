"""Conversations shared by the expected-ids generator and the parity test.

Vision token counts are fixed per case (the pads the official processor would insert for
media of these grids); the grids themselves are tested separately.
"""

TEXT = "Describe the clip: what happens at 0:12? I'm sure it's   fine.\n\n中文字幕 😀 <think>x</think> 12345"

IMAGE = {"type": "image", "image": "IMG"}
VIDEO = {"type": "video", "video": "VID"}

CONVERSATIONS = {
    "text": [{"role": "user", "content": [{"type": "text", "text": TEXT}]}],
    "text_string_with_system": [
        {"role": "system", "content": "You are a strict moderator."},
        {"role": "user", "content": "Is this OK?"},
        {"role": "assistant", "content": "Yes."},
        {"role": "user", "content": [{"type": "text", "text": "And now?"}]},
    ],
    "image": [{"role": "user", "content": [IMAGE, {"type": "text", "text": "What is in the image?"}]}],
    "multi_image": [
        {
            "role": "user",
            "content": [{"type": "text", "text": "Compare"}, IMAGE, {"type": "text", "text": " with "}, IMAGE],
        }
    ],
    "video": [{"role": "user", "content": [VIDEO, {"type": "text", "text": "Summarize the video."}]}],
    "mixed": [
        {"role": "user", "content": [IMAGE, VIDEO, {"type": "text", "text": "Is the logo in the video?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Yes, at 3s."}]},
        {"role": "user", "content": [{"type": "text", "text": "Where exactly?"}, IMAGE]},
    ],
}
# merged vision tokens per image / per video in these cases
IMAGE_TOKENS = 6
VIDEO_TOKENS = 16
THINKING = {"auto": None, "think": "think", "no_think": "no_think"}
