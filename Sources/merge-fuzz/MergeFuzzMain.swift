import Foundation
import MergeFuzz

/// `merge-fuzz`: libFuzzer over one fuzz target, or a replay of files through it.
///
/// Built with `-sanitize=fuzzer -DFUZZING` (Scripts/fuzz/run), libFuzzer drives the target that
/// $MERGE_FUZZ_TARGET names, taking libFuzzer's arguments; built plainly, it replays files
/// through a target: `merge-fuzz recipe|header|checkpoint FILE...`.
@main
enum MergeFuzzMain {
  static func main() {
    #if FUZZING
      var argc = CommandLine.argc
      var argv = CommandLine.unsafeArgv
      exit(LLVMFuzzerRunDriver(&argc, &argv, fuzzOneInput))
    #else
      replay(Array(CommandLine.arguments.dropFirst()))
    #endif
  }

  static func replay(_ args: [String]) {
    guard let name = args.first, let target = FuzzTarget(rawValue: name) else {
      print("usage: merge-fuzz recipe|header|checkpoint FILE...")
      exit(64)
    }
    for path in args.dropFirst() {
      guard let data = FileManager.default.contents(atPath: path) else {
        print("cannot read \(path)")
        exit(1)
      }
      target.run(Array(data))
    }
    print("\(args.count - 1) inputs replayed through \(name)")
  }
}

#if FUZZING
  /// The target $MERGE_FUZZ_TARGET names (read once).
  let fuzzTarget: FuzzTarget = {
    let name = ProcessInfo.processInfo.environment["MERGE_FUZZ_TARGET"] ?? ""
    guard let target = FuzzTarget(rawValue: name) else {
      let names = FuzzTarget.allCases.map(\.rawValue).joined(separator: ", ")
      FileHandle.standardError.write(Data("set MERGE_FUZZ_TARGET to one of: \(names)\n".utf8))
      exit(64)
    }
    return target
  }()

  /// libFuzzer's entry for one input.
  func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    let bytes = data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? []
    fuzzTarget.run(bytes)
    return 0
  }

  /// libFuzzer's driver, called from our own `main` (SwiftPM names the executable's entry).
  @_silgen_name("LLVMFuzzerRunDriver")
  func LLVMFuzzerRunDriver(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> CInt
  ) -> CInt
#endif
