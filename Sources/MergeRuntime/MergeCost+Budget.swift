import MergeCompiler
import MergeModel

extension MergeCost {
  /// The fastest schedule that fits `maxMemory`, with its price.
  ///
  /// The fastest schedule whose predicted peak, with 5% to spare, fits `maxMemory` (the default
  /// schedule when there is no budget), priced; `fits` is false when not even the smallest one
  /// does. `merge plan --max-memory` shows it, `merge run --max-memory` runs it.
  public static func cheapestSchedule(
    for merge: CompiledMerge, options: RunOptions, constants: CostConstants,
    startupSeconds: Double, maxMemory: Int?
  ) -> (cost: MergeCost, fits: Bool) {
    var options = options
    let layout = MergeRunner.layout(merge.plan, options: options)
    let side = MergeRunner.sideFileBytes(
      merge.plan, recipeText: merge.recipeText, seed: merge.seed, layout: layout,
      contents: options.contents)
    let baseline = ProcessMemory.residentBytes()
    func price() -> MergeCost {
      estimate(
        merge, layout: layout, outputFiles: side, options: options, constants: constants,
        baselineBytes: baseline, startupSeconds: startupSeconds,
        residency: { MappedFile.cachedBytes(path: $0, range: $1) })
    }
    // A schedule fits when its predicted peak, with 5% to spare for the model's error
    // (measured within −3% to +8% on the benchmark models), is within the budget.
    func fits(_ cost: MergeCost, _ budget: Int) -> Bool {
      Double(cost.peakMemoryBytes) * 1.05 <= Double(budget)
    }
    let cost = price()
    guard let maxMemory, !fits(cost, maxMemory) else { return (cost, true) }
    options.schedule = .small
    let small = price()
    return (small, fits(small, maxMemory))
  }
}
