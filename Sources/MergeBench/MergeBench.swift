import Dispatch
import Foundation
import MergeModel
import MergeRuntime
import Synchronization

/// Benchmarks run by `Scripts/bench` (never by the test suite).
public enum MergeBench {
  /// Runs the benchmark named on the command line.
  public static func main() {
    let args = Array(CommandLine.arguments.dropFirst())
    guard let command = args.first else {
      print(
        "usage: merge-bench io [--size GB] [--dir DIR] | generate DIR [--layers N] [--hidden N]"
          + " | parse [--tensors N] [--keys N] [--models N] | evict FILE..."
          + " | time OUT COMMAND [ARG...]")
      exit(64)
    }
    switch command {
    case "io": io(args: Array(args.dropFirst()))
    case "generate": generate(args: Array(args.dropFirst()))
    case "parse": parse(args: Array(args.dropFirst()))
    case "evict": evict(Array(args.dropFirst()))
    case "time": time(Array(args.dropFirst()))
    default:
      print("unknown benchmark '\(command)'")
      exit(64)
    }
  }

  static func option(_ args: [String], _ name: String) -> String? {
    guard let i = args.firstIndex(of: name), i + 1 < args.count else { return nil }
    return args[i + 1]
  }

  static func now() -> Double { Double(DispatchTime.now().uptimeNanoseconds) / 1e9 }

  static func shell(_ command: String) -> Double {
    let start = now()
    let p = Process()
    p.executableURL = URL(fileURLWithPath: "/bin/sh")
    p.arguments = ["-c", command]
    try? p.run()
    p.waitUntilExit()
    return now() - start
  }

  /// Writes Llama-shaped bf16 models for benchmarks.
  ///
  /// The models are `base`, `ft0`, `ft1` and `ft2` under DIR (default shape: hidden 1024,
  /// 16 layers, intermediate 2816, 16 heads, 8 KV heads, vocab 32000: 254M parameters, two
  /// shards each). The fine-tunes are the base plus noise on about 60% of the entries.
  /// Deterministic: the same arguments give the same bytes.
  /// Drops `paths` from the page cache (`posix_fadvise(POSIX_FADV_DONTNEED)` on each whole
  /// file, after `fsync`), then prints how many of their bytes are still cached.
  static func evict(_ paths: [String]) {
    var left = 0
    var total = 0
    for path in paths {
      let fd = open(path, O_RDONLY | O_CLOEXEC)
      guard fd >= 0 else {
        print("evict: cannot open \(path)")
        exit(1)
      }
      fsync(fd)
      _ = posix_fadvise(fd, 0, 0, Int32(POSIX_FADV_DONTNEED))
      close(fd)
      let size = (try? FileSystem.size(of: path)) ?? 0
      total += size
      left += MappedFile.cachedBytes(path: path, range: 0..<size)
    }
    print(
      String(
        format: "evicted %.2f GB; %.1f MB still cached", Double(total) / 1e9, Double(left) / 1e6))
  }

  /// Runs COMMAND and writes its wall time and peak RSS to OUT as "SECONDS KB".
  ///
  /// The time is to the microsecond (`/usr/bin/time`'s 10 ms steps are a tenth of a 0.1 s
  /// merge); exits with the command's status. The peak is the kernel's for the child, which
  /// starts from this process's resident size when it is spawned (~18 MB; every merge timed
  /// peaks far above).
  static func time(_ args: [String]) {
    guard args.count >= 2 else {
      print("usage: merge-bench time OUT COMMAND [ARG...]")
      exit(64)
    }
    let command = Array(args.dropFirst())
    var argv = command.map { strdup($0) } + [nil]
    defer { for p in argv { free(p) } }
    var pid: pid_t = 0
    let start = now()
    let spawned = posix_spawnp(&pid, command[0], nil, nil, &argv, environ)
    guard spawned == 0 else {
      print("time: cannot run \(command[0]): \(String(cString: strerror(spawned)))")
      exit(127)
    }
    var status: Int32 = 0
    var usage = rusage()
    while wait4(pid, &status, 0, &usage) < 0 && errno == EINTR {}
    let seconds = now() - start
    let line = String(format: "%.6f %d\n", seconds, usage.ru_maxrss)
    guard FileManager.default.createFile(atPath: args[0], contents: Data(line.utf8)) else {
      print("time: cannot write \(args[0])")
      exit(1)
    }
    // The command's exit status, or 128 + the signal that ended it.
    let signal = status & 0x7f
    exit(signal == 0 ? (status >> 8) & 0xff : 128 + signal)
  }

  static func generate(args: [String]) {
    guard let dir = args.first, !dir.hasPrefix("--") else {
      print("usage: merge-bench generate DIR [--layers N] [--hidden N]")
      exit(64)
    }
    let layers = Int(option(args, "--layers") ?? "16") ?? 16
    let hidden = Int(option(args, "--hidden") ?? "1024") ?? 1024
    let start = now()
    do {
      let parameters = try SyntheticLlama.write(to: dir, layers: layers, hidden: hidden)
      print(
        String(
          format: "generated 4 models of %d parameters (%.0f MB each) in %.1f s", parameters,
          Double(parameters * 2) / 1e6, now() - start))
    } catch {
      print("generate failed: \(error)")
      exit(1)
    }
  }

  /// Read and write throughput of the safetensors reader and writer on a file of `--size` GB,
  /// against `cat` and `dd` on the same machine, page cache warm for both.
  static func io(args: [String]) {
    let gigabytes = Double(option(args, "--size") ?? "1") ?? 1
    let dir = option(args, "--dir") ?? NSTemporaryDirectory() + "merge-bench-io"
    try? FileManager.default.removeItem(atPath: dir)
    try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
    defer { try? FileManager.default.removeItem(atPath: dir) }
    let bytes = Int(gigabytes * 1e9)
    // Llama-like bf16 tensors of 2816 × 1024 (5.8 MB each).
    let elements = 2816 * 1024
    let count = max(1, bytes / (elements * 2))
    let specs = (0..<count).map {
      TensorSpec(
        name: "model.layers.\($0).mlp.up_proj.weight", dtype: .bfloat16, shape: [2816, 1024])
    }
    let total = Double(count * elements * 2)
    print(
      "io benchmark: \(count) bf16 tensors, \(String(format: "%.2f", total / 1e9)) GB, \(ProcessInfo.processInfo.activeProcessorCount) cores"
    )

    // Write: the streaming writer, two threads, each tensor from an f32 buffer rounded to bf16.
    let destination = dir + "/model"
    var start = now()
    do {
      try write(specs, elements: elements, to: destination)
    } catch {
      print("write failed: \(error)")
      exit(1)
    }
    let writeTime = now() - start
    let file = destination + "/model.safetensors"
    let ddTime = shell(
      "dd if=/dev/zero of=\(dir)/dd.bin bs=1M count=\(Int(total / 1_048_576)) 2>/dev/null")
    print(
      String(
        format: "write: merge %.2f s (%.2f GB/s)   dd %.2f s (%.2f GB/s)   ratio %.2f×",
        writeTime, total / writeTime / 1e9, ddTime, total / ddTime / 1e9, writeTime / ddTime))

    // Read: warm the page cache, then time cat and the reader (decode to f32, two threads).
    _ = shell("cat \(file) > /dev/null")
    let catTime = shell("cat \(file) > /dev/null")
    start = now()
    let checksum: Double
    do {
      checksum = try read(file, elements: elements)
    } catch {
      print("read failed: \(error)")
      exit(1)
    }
    let readTime = now() - start
    print(
      String(
        format:
          "read:  merge %.2f s (%.2f GB/s)   cat %.2f s (%.2f GB/s)   ratio %.2f×   (checksum %.1f)",
        readTime, total / readTime / 1e9, catTime, total / catTime / 1e9, readTime / catTime,
        checksum))
  }

  /// Writes `specs` (each `elements` bf16 values) with the streaming writer on two threads.
  static func write(_ specs: [TensorSpec], elements: Int, to destination: String) throws {
    let folder = try OutputFolder(destination: destination)
    let writer = try SafetensorsWriter(
      folder: folder, layout: ShardLayout(tensors: specs, shardSize: 0))
    let failure = Mutex<(any Error)?>(nil)
    DispatchQueue.concurrentPerform(iterations: 2) { worker in
      var source = [Float](repeating: 0, count: elements)
      for i in 0..<elements { source[i] = Float(i % 1000) * 0.001 - 0.5 }
      var out = [UInt16](repeating: 0, count: elements)
      for t in stride(from: worker, to: specs.count, by: 2) {
        for i in 0..<elements { out[i] = FloatConversion.bfloat16(from: source[i] + Float(t)) }
        do {
          try out.withUnsafeBytes {
            try writer.write(tensor: specs[t].name, byteOffset: 0, bytes: $0)
          }
        } catch {
          failure.withLock { $0 = error }
        }
      }
    }
    if let e = failure.withLock({ $0 }) { throw e }
    try writer.finish()
    try folder.commit()
  }

  /// Decodes every tensor of `file` to f32 on two threads; returns a checksum.
  static func read(_ file: String, elements: Int) throws -> Double {
    let weights = try ModelWeights(files: [try SafetensorsFile(path: file)])
    let sums = Mutex<Double>(0)
    let names = weights.tensors.map(\.name)
    DispatchQueue.concurrentPerform(iterations: 2) { worker in
      var buffer = [Float](repeating: 0, count: elements)
      var local: Double = 0
      for t in stride(from: worker, to: names.count, by: 2) {
        guard let view = try? weights.tensor(names[t]) else { continue }
        buffer.withUnsafeMutableBufferPointer { view.decode(0..<view.count, into: $0) }
        local += Double(buffer[elements / 2])
      }
      sums.withLock { $0 += local }
    }
    return sums.withLock { $0 }
  }
}
