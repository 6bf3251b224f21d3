import Dispatch
import MergeCompiler
import MergeModel
import MergeRecipe

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// Measures ``CostConstants`` on this machine.
///
/// Writes four small synthetic models (39M parameters each, 2 layers of the benchmark's shape), times mapping, reading from disk and
/// writing, then runs a task_arithmetic, a ties and a nearswap merge of them and solves the
/// cost model for the per-element constants of each kind of work. Takes a few seconds.
public enum Calibration {
  /// Why calibration failed.
  public struct Failure: Error, Sendable, CustomStringConvertible {
    public var description: String
  }

  /// Measures the constants with `threads` workers, using `scratch` (created, then removed).
  public static func run(threads: Int, scratch: String) throws(Failure) -> CostConstants {
    FileSystem.removeTree(scratch)
    do {
      try FileSystem.makeDirectories(scratch)
    } catch {
      throw Failure(description: error.description)
    }
    defer { FileSystem.removeTree(scratch) }
    do {
      try SyntheticLlama.write(to: scratch, layers: 2, hidden: 1024, vocab: 8000)
    } catch {
      throw Failure(description: "cannot write the calibration models: \(error.description)")
    }
    var constants = CostConstants.defaults
    constants.calibrated = true
    let files = SyntheticLlama.names.map { FileSystem.join(scratch, "\($0)/model.safetensors") }
    constants.diskBytesPerSecond = diskThroughput(files[3]) ?? constants.diskBytesPerSecond
    constants.mapBytesPerSecond = mapThroughput(files) ?? constants.mapBytesPerSecond
    constants.writeBytesPerSecond =
      writeThroughput(FileSystem.join(scratch, "write-test")) ?? constants.writeBytesPerSecond

    // Each merge measures one constant, the others being known by then.
    let recipes:
      [(method: String, body: String, measures: WritableKeyPath<CostConstants, Double>)] =
        [
          (
            TaskArithmetic.spec.name,
            "models: [{model: ft0, parameters: {weight: 0.3}}, "
              + "{model: ft1, parameters: {weight: 0.3}}, {model: ft2, parameters: {weight: 0.3}}]",
            \.passNanoseconds
          ),
          (
            Ties.spec.name,
            "models: [{model: ft0, parameters: {weight: 0.3, density: 0.5}}, "
              + "{model: ft1, parameters: {weight: 0.3, density: 0.5}}, "
              + "{model: ft2, parameters: {weight: 0.3, density: 0.5}}]",
            \.selectNanoseconds
          ),
          (
            NearSwap.spec.name, "models: [{model: base}, {model: ft0}]\nparameters: {t: 0.001}",
            \.wholeNanoseconds
          ),
        ]
    for (method, body, measures) in recipes {
      let text = "merge_method: \(method)\nbase_model: base\n\(body)\ndtype: bfloat16\n"
      let (merge, seconds) = try timedMerge(text, named: method, in: scratch, threads: threads)
      // The model's seconds are linear in the per-element constants: solve for the one this
      // merge measures, the others known.
      let options = RunOptions(threads: threads)
      func predicted(_ c: CostConstants) -> Double {
        MergeCost.estimate(
          merge, layout: MergeRunner.layout(merge.plan, options: options), outputFiles: 0,
          options: options, constants: c, baselineBytes: 0, startupSeconds: 0
        ).estimatedSeconds
      }
      var zero = constants
      zero[keyPath: measures] = 0
      var unit = constants
      unit[keyPath: measures] = 1
      let known = predicted(zero)
      let perUnit = predicted(unit) - known
      guard perUnit > 0 else { continue }
      constants[keyPath: measures] = max(0.01, (seconds - known) / perUnit)
    }
    return constants
  }

  /// Compiles recipe `text` (written into `scratch`) and runs it twice: the first run warms the
  /// code and the page cache, the second is timed.
  static func timedMerge(_ text: String, named name: String, in scratch: String, threads: Int)
    throws(Failure) -> (CompiledMerge, seconds: Double)
  {
    let path = FileSystem.join(scratch, "\(name).yml")
    do {
      try FileSystem.write(path, bytes: Array(text.utf8))
    } catch {
      throw Failure(description: error.description)
    }
    guard let merge = Compiler.compile(path: path).merge else {
      throw Failure(description: "the calibration recipe '\(name)' does not compile")
    }
    let out = FileSystem.join(scratch, "out-\(name)")
    var seconds = 0.0
    for _ in 0..<2 {
      FileSystem.removeTree(out)
      let start = DispatchTime.now().uptimeNanoseconds
      do {
        _ = try MergeRunner.run(merge, output: out, options: RunOptions(threads: threads))
      } catch {
        throw Failure(description: "the calibration merge '\(name)' failed: \(error)")
      }
      seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }
    return (merge, seconds)
  }

  /// The scratch folder for a calibration by this process in the cache folder `directory`.
  ///
  /// Folders left by calibrations whose process is gone (killed mid-way) are removed first.
  public static func scratch(in directory: String) -> String {
    for name in (try? FileSystem.contents(of: directory)) ?? [] where name.hasPrefix("calibration-")
    {
      guard let pid = Int32(name.dropFirst("calibration-".count)) else { continue }
      if kill(pid, 0) != 0 && errno == ESRCH {
        FileSystem.removeTree(FileSystem.join(directory, name))
      }
    }
    return FileSystem.join(directory, "calibration-\(getpid())")
  }

  static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

  /// Reads `path` after asking the kernel to drop it from the page cache.
  static func diskThroughput(_ path: String) -> Double? {
    let fd = open(path, O_RDONLY | O_CLOEXEC)
    guard fd >= 0 else { return nil }
    defer { close(fd) }
    fsync(fd)
    _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
    let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 4096)
    defer { buffer.deallocate() }
    let start = now()
    var total = 0
    while true {
      let n = read(fd, buffer, 1 << 20)
      if n <= 0 { break }
      total += n
    }
    let seconds = now() - start
    return total > 0 && seconds > 0 ? Double(total) / seconds : nil
  }

  /// Maps files that are in the page cache into the process (`MADV_POPULATE_READ`).
  static func mapThroughput(_ paths: [String]) -> Double? {
    var total = 0
    var seconds = 0.0
    for path in paths {
      guard let file = try? MappedFile(path: path) else { return nil }
      // Into the page cache first, then measure mapping only.
      file.willNeed(0..<file.bytes.count)
      file.dontNeed(0..<file.bytes.count)
      let start = now()
      file.willNeed(0..<file.bytes.count)
      seconds += now() - start
      total += file.bytes.count
    }
    return seconds > 0 ? Double(total) / seconds : nil
  }

  /// Writes 64 MB with `pwrite` in 4 MB pieces, as the shard writer does: the best of three
  /// tries (the first write of a file also pays for the kernel's bookkeeping, and writeback of
  /// earlier files can stall one).
  static func writeThroughput(_ path: String) -> Double? {
    var best: Double?
    for _ in 0..<3 {
      let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
      guard fd >= 0 else { return best }
      let piece = 4 << 20
      let buffer = [UInt8](repeating: 0x5A, count: piece)
      let start = now()
      var ok = true
      for i in 0..<16 where ok {
        let n = buffer.withUnsafeBytes { pwrite(fd, $0.baseAddress, piece, off_t(i * piece)) }
        ok = n == piece
      }
      let seconds = now() - start
      close(fd)
      unlink(path)
      guard ok, seconds > 0 else { return best }
      best = max(best ?? 0, Double(16 * piece) / seconds)
    }
    return best
  }
}
