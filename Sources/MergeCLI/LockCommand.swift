import Dispatch
import MergeCompiler
import MergeModel
import MergeRecipe
import MergeRuntime

#if canImport(Glibc)
  import Glibc
#elseif canImport(Musl)
  import Musl
#elseif canImport(Darwin)
  import Darwin
#endif

/// `merge lock RECIPE`: records exactly what a merge reads, beside the recipe.
struct LockCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "lock",
    abstract: "Write the recipe's lock file: every input file's size and SHA-256.",
    discussion: """
      Checks and compiles the recipe, then hashes every file the merge reads (configs,
      indexes, weights, tokenizer files, adapters; a Hub file by the SHA-256 the cache names it
      by) and writes RECIPE.lock beside the recipe (recipe.yml → recipe.lock): the tool, the
      seed, the recipe's digest, every source as resolved (a Hub repository with its commit)
      and the files. 'merge run' then records its output there, 'merge run --locked' refuses
      other inputs and 'merge verify' checks an output against it. Outputs already recorded
      are kept when the inputs are the same.
      """,
    arguments: [CommonOption.recipe.definition] + CompileArguments.definitions + [
      CommonOption.threads.definition
    ])

  var recipe: String
  var compile: CompileArguments
  var threads: Int

  init(_ arguments: ParsedArguments) throws(UsageError) {
    recipe = try arguments.value(CommonOption.recipe)
    compile = try CompileArguments(arguments)
    threads = try arguments.value(CommonOption.threads)
  }

  func run(console: Console) -> Int32 {
    let start = DispatchTime.now().uptimeNanoseconds
    guard let compilation = compileReporting(recipe, options: compile.options, console: console),
      let merge = compilation.merge
    else { return ExitCode.failure }
    let path = MergeLock.path(ofRecipe: recipe)
    do {
      var lock = try MergeLock.make(
        merge, recipeText: compilation.text ?? merge.recipeText, threads: threads)
      if let existing = try? MergeLock(path: path), existing.mismatch(lock) == nil {
        lock.outputs = existing.outputs
      }
      try lock.write(to: path)
      let bytes = lock.inputs.reduce(0) { $0 + $1.size }
      let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
      console.out(
        "\(path): \(lock.inputs.count) input files, \(formatBytes(bytes)), in \(format2(seconds)) s\n"
      )
      return ExitCode.success
    } catch {
      console.report(.lockFailed(error.description))
      return ExitCode.failure
    }
  }
}

/// `merge verify RECIPE OUTPUT`: checks an output against the recipe's lock file.
struct VerifyCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "verify",
    abstract: "Check that an output folder is the one the recipe's lock file records.",
    discussion: """
      Hashes every file of OUTPUT and compares it with the outputs RECIPE.lock records (written
      by 'merge run' when the lock exists); exits 1 naming the first file that differs, is
      missing or is not in the lock. With --recompute, runs the merge again into a temporary
      folder and compares the two byte for byte instead.
      """,
    arguments: [CommonOption.recipe.definition, output.definition, recompute.definition]
      + MergeArguments.definitions)

  static let output = Option.positional("output", help: "The model folder to verify.")
  static let recompute = Option.flag(
    "recompute", help: "Merge again into a temporary folder and compare byte for byte.")

  var recipe: String
  var output: String
  var recompute: Bool
  var settings: MergeArguments

  init(_ arguments: ParsedArguments) throws(UsageError) {
    recipe = try arguments.value(CommonOption.recipe)
    output = try arguments.value(Self.output)
    recompute = try arguments.value(Self.recompute)
    settings = try MergeArguments(arguments)
  }

  func run(console: Console) -> Int32 {
    let path = MergeLock.path(ofRecipe: recipe)
    if recompute { return rerun(lockPath: path, console: console) }
    do {
      let lock = try MergeLock(path: path)
      guard !lock.outputs.isEmpty else {
        console.report(.lockFailed("\(path) records no output yet; 'merge run' records one"))
        return ExitCode.failure
      }
      let found = try MergeLock.outputs(of: output, threads: settings.execution.threads)
      if let difference = lock.outputMismatch(found) {
        console.report(.verifyFailed(output, difference))
        return ExitCode.failure
      }
      console.out("\(output): \(found.count) files, as \(path) records\n")
      return ExitCode.success
    } catch {
      console.report(.lockFailed(error.description))
      return ExitCode.failure
    }
  }

  /// Runs the merge again into a temporary folder beside OUTPUT and compares the files.
  func rerun(lockPath: String, console: Console) -> Int32 {
    guard
      let compilation = compileReporting(
        recipe, options: settings.compile.options, console: console),
      let merge = compilation.merge
    else { return ExitCode.failure }
    var options = settings.execution.runOptions(progress: nil)
    var lock: MergeLock?
    if FileSystem.kind(of: lockPath) == .file {
      lock = try? MergeLock.make(
        merge, recipeText: compilation.text ?? merge.recipeText, threads: options.threads)
    }
    options.metadata = Provenance.metadata(
      recipeText: merge.recipeText, seed: merge.seed, lock: lock)
    let scratch = FileSystem.join(
      FileSystem.directoryName(output), ".merge-verify-\(getpid())")
    defer { FileSystem.removeTree(scratch) }
    do {
      _ = try MergeRunner.run(merge, output: scratch, options: options)
    } catch {
      console.report([error.diagnostic(for: merge, file: recipe)], sources: compilation.sources)
      return ExitCode.failure
    }
    do {
      let again = try MergeLock.outputs(of: scratch, threads: options.threads)
      let found = try MergeLock.outputs(of: output, threads: options.threads)
      if let difference = MergeLock.mismatch(expected: again, found: found) {
        console.report(.verifyFailed(output, difference + " (against a merge run again now)"))
        return ExitCode.failure
      }
      console.out("\(output): \(found.count) files, the same bytes as the merge run again\n")
      return ExitCode.success
    } catch {
      console.report(.lockFailed(error.description))
      return ExitCode.failure
    }
  }
}

extension Diagnostic.Message {
  static func verifyFailed(_ output: String, _ difference: String) -> Self {
    Self("verify-failed", "\(output): \(difference)")
  }
}
