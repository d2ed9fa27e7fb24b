"""The GAN stage: RECORDS/ → RUN/ → SYN/ for Pix2Pix, Pix2Pix-N and StarGAN (networks in ``cxr_keras.models``).

    inputs              tf.data pipelines over RECORDS/ (pairs, healthy boxes, StarGAN domains)
    registry            the models: build, dataset, preset config, synthesis, config class
    runs                RUN/: resolve a new or resumed run, its config file, load a trained run
    checkpoints         verified checkpoints: found from their files, damaged ones skipped, none overwritten
    training            the training loop (``Trainer``, ``train``)
    synthesis           ``synthesize(run_dir, records_dir, out_dir)``: load a run, dispatch on its model
    synthesis_common    the SynthesisError, uint8 conversion and the SYN/ writer
    synthesis_pix2pix   fidelity-checked composites (box kept bit for bit) and their detection record
    synthesis_stargan   healthy images translated into each finding
    evaluate            painted-region L1 / PSNR / SSIM of a Pix2Pix run
Imports point one way: training, synthesis and evaluate use runs, runs uses registry and checkpoints,
registry uses inputs and synthesis_pix2pix / synthesis_stargan, and those use only synthesis_common, models
and the data layers.
"""
