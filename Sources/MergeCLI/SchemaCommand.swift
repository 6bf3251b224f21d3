import MergeCompiler

/// `merge schema`: prints the JSON Schema of the recipe format.
struct SchemaCommand: Subcommand {
  static let configuration = CommandConfiguration(
    commandName: "schema",
    abstract: "Print the JSON Schema of the recipe format.",
    discussion: """
      Editors validate recipes against it: point yaml-language-server at the file with a
      '# yaml-language-server: $schema=PATH' comment. The same schema ships as
      Schema/recipe.schema.json.
      """)

  init(_ arguments: ParsedArguments) throws(UsageError) {}

  func run(console: Console) -> Int32 {
    console.out(RecipeSchema.text())
    return ExitCode.success
  }
}
