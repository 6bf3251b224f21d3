import Dispatch
import MergeCompiler
import Synchronization

/// Which steps of a program may be computed beside the one before them.
///
/// A tensor's computation leaves cores idle: a torch-order selection is one thread's work, and
/// three of them on two cores leave one core idle for a third of the time. So two steps run at
/// once when both are plain output tensors (no stage tensor read, computed or freed, so the
/// order between them cannot matter) and their working sets together fit in what one step of
/// the program holds at most: running them side by side does not raise the run's peak. A step
/// maps the next one's inputs when it starts (read-ahead), so those count with its own, in the
/// steps admitted and in that most: a small step beside a layer must not map a model's head
/// while the layer still holds its inputs. Each step's bytes do not depend on what runs beside
/// it, so the output is the same.
struct SideBySide {
  /// Most steps computed at once.
  static let width = 2

  /// Whether step `i` may run beside another.
  let plain: [Bool]
  /// Each step's predicted working set (``MergeCost/price``).
  let workingSet: [Int]
  /// The bytes of the next step's inputs each step maps when it starts (0 without read-ahead).
  let readAhead: [Int]
  /// The most bytes the steps running at once may hold: the most one step holds, its working
  /// set and the next step's inputs (the run's peak when steps run one at a time).
  let budget: Int

  init(_ steps: [ProgramStep], merge: CompiledMerge, options: RunOptions) {
    let identities = StageTensors(merge).identities
    plain = steps.map { step in
      step.stage == nil && step.releases.isEmpty
        && !step.graph.plan.inputs.contains { step.models[$0.model].stage != nil }
    }
    guard options.schedule.sideBySide, steps.count > 1 else {
      workingSet = steps.map { _ in 0 }
      readAhead = workingSet
      budget = 0
      return
    }
    workingSet = steps.map {
      MergeCost.price(
        $0.graph, models: $0.models, stages: identities, options: options,
        constants: .defaults
      ).workingSetBytes
    }
    let mapped = steps.map { MergeCost.mappedBytes($0.graph, models: $0.models) }
    readAhead = steps.indices.map {
      options.schedule.prefetch && steps[$0].readsAhead && $0 + 1 < steps.count
        ? mapped[$0 + 1] : 0
    }
    budget = zip(workingSet, readAhead).map { $0 + $1 }.max() ?? 0
  }

  /// Whether step `i` may start while the steps `running` (indices) compute.
  func admits(_ i: Int, running: [Int]) -> Bool {
    if running.isEmpty { return true }
    guard budget > 0, running.count < Self.width, plain[i], running.allSatisfy({ plain[$0] })
    else { return false }
    return running.reduce(workingSet[i] + readAhead[i]) { $0 + workingSet[$1] } <= budget
  }

  /// Runs `body` for every step in order, each on its own thread as soon as it is admitted.
  ///
  /// ``admits(_:running:)`` decides; the first error is rethrown (no step starts after it).
  /// Returns the most steps that ran at once.
  @discardableResult
  func forEachStep(
    _ count: Int, cancellation: Cancellation?,
    _ body: @escaping @Sendable (Int) throws(RunError) -> Void
  ) throws(RunError) -> Int {
    let state = Mutex<(running: [Int], error: RunError?, most: Int)>(([], nil, 0))
    let finished = DispatchSemaphore(value: 0)
    let group = DispatchGroup()
    for i in 0..<count {
      while true {
        if let signal = cancellation?.signal {
          state.withLock { if $0.error == nil { $0.error = .interrupted(signal: signal) } }
        }
        let started = state.withLock { s -> Bool? in
          if s.error != nil { return nil }
          guard admits(i, running: s.running) else { return false }
          s.running.append(i)
          s.most = max(s.most, s.running.count)
          return true
        }
        if started == true { break }
        if started == nil {
          group.wait()
          if let error = state.withLock({ $0.error }) { throw error }
        }
        finished.wait()
      }
      DispatchQueue.global().async(group: group) {
        do throws(RunError) {
          try body(i)
        } catch {
          state.withLock { if $0.error == nil { $0.error = error } }
        }
        state.withLock { $0.running.removeAll { $0 == i } }
        finished.signal()
      }
    }
    group.wait()
    if let error = state.withLock({ $0.error }) { throw error }
    return state.withLock { $0.most }
  }
}
