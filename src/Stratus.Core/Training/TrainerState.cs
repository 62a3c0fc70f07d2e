// Where a run stands: the step it has reached and its best validation loss so far (Infinity
// before its first evaluation). Each checkpoint keeps it as state.json, so that `train --resume`
// goes on from that step and keeps a new best checkpoint only for a loss that beats this one.
// Trainer makes it and reads it back; Checkpoint writes it and refuses one that is no run's.
namespace Stratus.Training;

// Dropout is reseeded per micro-batch from (seed, step, micro-batch), so no RNG state is kept;
// older checkpoints' torch_rng_state is skipped when read.
public sealed record TrainerState(long Step, double BestValLoss);
