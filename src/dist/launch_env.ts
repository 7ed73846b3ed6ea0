/**
 * What a launcher (mpirun, srun) tells a process in its environment, read without the addon:
 * the world size and this process's rank (the addon's launch_info reads the same variables).
 */
function envInt(name: string): number | undefined {
  let v: string | undefined;
  try {
    v = Deno.env.get(name);
  } catch {
    return undefined;
  }
  return v !== undefined && /^\d+$/.test(v) ? Number(v) : undefined;
}

/** The world size the launcher's environment gives (1 without a launcher). */
export function launchedRanks(): number {
  return envInt("OMPI_COMM_WORLD_SIZE") ?? envInt("PMI_SIZE") ??
    (envInt("SLURM_PROCID") !== undefined ? envInt("SLURM_NTASKS") : undefined) ?? 1;
}

/** This process's rank by the launcher's environment (0 without a launcher). */
export function launchedRank(): number {
  if (envInt("OMPI_COMM_WORLD_SIZE") !== undefined) return envInt("OMPI_COMM_WORLD_RANK") ?? 0;
  if (envInt("PMI_SIZE") !== undefined) return envInt("PMI_RANK") ?? 0;
  return envInt("SLURM_NTASKS") !== undefined ? envInt("SLURM_PROCID") ?? 0 : 0;
}
