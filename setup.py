from setuptools import find_packages, setup

# Versions tested together on the CPU and with upstream LLaVA-NeXT @ df17966 (see README and
# ../shared/UPSTREAM-NOTES.md). torch/torchvision are pinned as a pair: other torchvision builds fail to
# import beside a different torch.
INSTALL_REQUIRES = [
    "torch==2.14.1",
    "torchvision==0.29.1",
    "transformers==4.45.2",
    "accelerate==0.34.2",
    "huggingface-hub<1.0",
    "tokenizers>=0.19,<0.21",
    "deepspeed>=0.14.4,<=0.19.8",
    "decord==0.6.0",
    "av",
    "opencv-python-headless",
    "einops",
    "numpy",
    "pillow",
    "tqdm",
    "safetensors",
    "matplotlib",
]

EXTRAS = {
    "dev": ["pytest", "hypothesis", "dashscope==2.0.2", "datasets", "tyro", "lmms-eval==0.7.3"],
    "gpu": ["flash-attn"],
    "llava": ["llava @ git+https://github.com/LLaVA-VL/LLaVA-NeXT.git@df17966", "datasets", "tyro"],
    "eval": ["lmms-eval==0.7.3"],
}

setup(
    name="llava_st",
    version="0.1.0",
    description="Spatio-temporal video grounding (SpaceVLLM) for LLaVA-Video, as a plug-in for LLaVA-NeXT",
    python_requires=">=3.10",
    packages=find_packages(include=["llava_st", "llava_st.*"]),
    package_data={"llava_st": ["**/*.yaml", "**/*.json"]},
    install_requires=INSTALL_REQUIRES,
    extras_require=EXTRAS,
    entry_points={
        "console_scripts": ["llava-st=llava_st.cli:main"],
        "lmms_eval.models": ["llava_st=llava_st.eval.lmms_plugin:MANIFEST"],
    },
)
