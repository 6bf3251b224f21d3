import Foundation
import MergeModel
import MergeRecipe
import Testing
import _TestSupport

@testable import MergeCompiler

@Suite struct SchemaTests {
  @Test("Schema/recipe.schema.json is what the checker's tables generate")
  func schemaInStep() throws {
    let path = Repository.root + "/Schema/recipe.schema.json"
    let generated = RecipeSchema.text()
    if ProcessInfo.processInfo.environment["RECORD_SNAPSHOTS"] != nil {
      try generated.write(toFile: path, atomically: true, encoding: .utf8)
    }
    let committed = try String(contentsOfFile: path, encoding: .utf8)
    #expect(committed == generated, "run RECORD_SNAPSHOTS=1 swift test --filter SchemaTests")
  }

  @Test("the schema names every method, parameter and key the checker knows")
  func schemaCoversCatalog() throws {
    let schema = try JSONValue.parse(RecipeSchema.text())
    let methods = schema["properties"]?["merge_method"]?["enum"]?.arrayValue?.compactMap(
      \.stringValue)
    #expect(methods == MethodCatalog.all.map(\.name))
    let keys = schema["properties"]?.objectValue?.map(\.0)
    #expect(keys == RecipeDecoder.topLevelKeys)
    for method in MethodCatalog.all {
      let params = schema["definitions"]?["parameters_\(method.name)"]?["properties"]?.objectValue?
        .map(\.0)
      #expect(params == method.parameters.map(\.name), "\(method.name)")
    }
  }
}

@Suite struct DocumentationTests {
  @Test("every recipe in Recipes/ and Examples/ checks without a single diagnostic")
  func bundledRecipes() throws {
    var paths: [String] = []
    for folder in [Repository.root + "/Recipes", Repository.examples] {
      paths += try FileManager.default.contentsOfDirectory(atPath: folder)
        .filter { $0.hasSuffix(".yml") }.map { folder + "/" + $0 }
    }
    #expect(paths.count >= 21)
    for path in paths {
      let report = RecipeChecker.check(path: path)
      #expect(report.diagnostics.isEmpty, "\(path): \(report.diagnostics.map(\.message.text))")
    }
  }

  @Test("Recipes/ has a recipe for every method")
  func recipePerMethod() throws {
    let names = Set(
      try FileManager.default.contentsOfDirectory(atPath: Repository.root + "/Recipes"))
    for method in MethodCatalog.all {
      #expect(names.contains(method.name + ".yml"), "Recipes/\(method.name).yml is missing")
    }
  }

  @Test("the README's method table is the one the catalog generates")
  func readmeTable() throws {
    let readme = try String(contentsOfFile: Repository.root + "/README.md", encoding: .utf8)
    #expect(readme.contains(MethodCatalog.markdownTable()))
  }
}
