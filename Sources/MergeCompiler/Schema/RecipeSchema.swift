import MergeModel
import MergeRecipe

/// Builds the JSON Schema of the recipe format from the same tables the decoder and checker
/// use, so that `Schema/recipe.schema.json` can be tested to be in step with them.
public enum RecipeSchema {
  /// The schema as formatted JSON text, ending with a newline.
  public static func text() -> String {
    schema().formatted() + "\n"
  }

  static func object(_ members: [(String, JSONValue)]) -> JSONValue { .object(members) }
  static func string(_ s: String) -> JSONValue { .string(s) }
  static func ref(_ name: String) -> JSONValue {
    object([("$ref", string("#/definitions/\(name)"))])
  }
  static func strings(_ list: [String]) -> JSONValue { .array(list.map { .string($0) }) }

  static func closed(
    _ properties: [(String, JSONValue)], required: [String] = [], description: String? = nil
  ) -> JSONValue {
    var members: [(String, JSONValue)] = [("type", string("object"))]
    if let description { members.append(("description", string(description))) }
    members.append(("properties", object(properties)))
    if !required.isEmpty { members.append(("required", strings(required))) }
    members.append(("additionalProperties", .bool(false)))
    return object(members)
  }

  static func schema() -> JSONValue {
    let topLevel = topLevelProperties()
    precondition(topLevel.map(\.0) == RecipeDecoder.topLevelKeys, "schema and decoder disagree")
    return object([
      ("$schema", string("http://json-schema.org/draft-07/schema#")),
      ("$id", string("https://merge.invalid/schema/recipe.schema.json")),
      ("title", string("merge recipe (mergekit configuration)")),
      ("description", string("A mergekit YAML merge recipe, as read by merge.")),
      ("type", string("object")),
      ("properties", object(topLevel)),
      ("required", strings(["merge_method"])),
      ("additionalProperties", .bool(false)),
      ("allOf", .array(methodConditions())),
      (
        "definitions",
        object(
          modelDefinitions() + layoutDefinitions() + parameterDefinitions()
            + methodParameterDefinitions())
      ),
    ])
  }

  /// The keys of a recipe, in the decoder's order.
  static func topLevelProperties() -> [(String, JSONValue)] {
    let dtypes = RecipeChecker.dtypeNames + RecipeChecker.dtypeNames.map { "torch." + $0 }
    return [
      (
        "merge_method",
        object([
          ("description", string("The merge method.")),
          ("enum", strings(MethodRegistry.specs.map(\.name))),
        ])
      ),
      ("base_model", ref("modelReference")),
      ("models", object([("type", string("array")), ("items", ref("inputModel"))])),
      ("slices", object([("type", string("array")), ("items", ref("outputSlice"))])),
      (
        "modules",
        object([
          ("type", string("object")),
          ("additionalProperties", ref("outputModule")),
        ])
      ),
      ("parameters", ref("parameters")),
      (
        "dtype",
        object([
          ("description", string("The dtype inputs are rounded to before computing.")),
          ("enum", strings(dtypes)),
        ])
      ),
      (
        "out_dtype",
        object([
          ("description", string("The dtype the output is stored in.")),
          ("enum", strings(dtypes)),
        ])
      ),
      ("tokenizer_source", ref("tokenizerSource")),
      ("tokenizer", tokenizerBlock()),
      (
        "chat_template",
        object([
          (
            "description",
            string(
              "A chat template name (chatml, llama3, alpaca, mistral, exaone, auto) or a Jinja template."
            )
          ),
          ("type", string("string")),
        ])
      ),
      (
        "name",
        object([
          ("description", string("The stage's name in a multi-document recipe.")),
          ("type", string("string")),
        ])
      ),
    ]
  }

  /// The `tokenizer:` block.
  static func tokenizerBlock() -> JSONValue {
    closed([
      ("source", ref("tokenizerSource")),
      (
        "tokens",
        object([
          ("type", string("object")),
          (
            "additionalProperties",
            closed([
              (
                "source",
                object([
                  (
                    "oneOf",
                    .array([
                      ref("modelReference"),
                      closed(
                        [("kind", object([("const", string("zero"))]))], required: ["kind"]),
                      closed(
                        [
                          ("kind", object([("const", string("model_token"))])),
                          ("model", ref("modelReference")),
                          ("token_id", object([("type", string("integer"))])),
                          ("token", object([("type", string("string"))])),
                        ], required: ["kind", "model"]),
                    ])
                  )
                ])
              ),
              ("force", object([("type", string("boolean"))])),
            ])
          ),
        ])
      ),
      ("pad_to_multiple_of", object([("type", string("integer")), ("minimum", .integer(1))])),
    ])
  }

  /// One `if merge_method is M then parameters are M's` per method.
  static func methodConditions() -> [JSONValue] {
    MethodRegistry.specs.map { m in
      object([
        (
          "if",
          object([("properties", object([("merge_method", object([("const", string(m.name))]))]))])
        ),
        ("then", object([("properties", object([("parameters", ref("parameters_\(m.name)"))]))])),
      ])
    }
  }

  /// Model paths and references.
  static func modelDefinitions() -> [(String, JSONValue)] {
    [
      (
        "modelPath",
        object([
          (
            "oneOf",
            .array([
              object([("type", string("string"))]),
              closed(
                [
                  ("path", object([("type", string("string"))])),
                  ("revision", object([("type", string("string"))])),
                ], required: ["path"]),
            ])
          )
        ])
      ),
      (
        "modelReference",
        object([
          (
            "description",
            string("A model folder: 'path', 'path@revision', 'path+lora', or a mapping.")
          ),
          (
            "oneOf",
            .array([
              object([("type", string("string"))]),
              closed(
                [
                  ("model", ref("modelPath")),
                  ("lora", ref("modelPath")),
                  ("override_architecture", object([("type", string("string"))])),
                ], required: ["model"]),
            ])
          ),
        ])
      ),
      (
        "tokenizerSource",
        object([
          (
            "anyOf",
            .array([
              object([("enum", strings(["union", "base"]))]),
              ref("modelReference"),
            ])
          )
        ])
      ),
    ]
  }

  /// Model lists, slices and modules.
  static func layoutDefinitions() -> [(String, JSONValue)] {
    [
      (
        "inputModel",
        closed(
          [
            ("model", ref("modelReference")),
            ("parameters", ref("parameters")),
          ], required: ["model"])
      ),
      (
        "inputSlice",
        closed(
          [
            ("model", ref("modelReference")),
            (
              "layer_range",
              object([
                ("type", string("array")),
                ("items", object([("type", string("integer")), ("minimum", .integer(0))])),
                ("minItems", .integer(2)),
                ("maxItems", .integer(2)),
              ])
            ),
            ("parameters", ref("parameters")),
          ], required: ["model", "layer_range"])
      ),
      (
        "outputSlice",
        closed(
          [
            (
              "sources",
              object([
                ("type", string("array")), ("items", ref("inputSlice")), ("minItems", .integer(1)),
              ])
            ),
            ("base_model", ref("modelReference")),
            ("residual_weight", object([("type", string("number"))])),
            ("parameters", ref("parameters")),
          ], required: ["sources"])
      ),
      (
        "outputModule",
        closed([
          ("slices", object([("type", string("array")), ("items", ref("outputSlice"))])),
          ("models", object([("type", string("array")), ("items", ref("inputModel"))])),
          ("parameters", ref("parameters")),
        ])
      ),
    ]
  }

  /// Parameter settings: scalars, gradients, `{filter, value}` entries, parameter tables.
  static func parameterDefinitions() -> [(String, JSONValue)] {
    [
      ("scalar", object([("type", strings(["number", "boolean", "string"]))])),
      (
        "scalarOrGradient",
        object([
          (
            "oneOf",
            .array([
              ref("scalar"),
              object([("type", string("array")), ("items", ref("scalar"))]),
            ])
          )
        ])
      ),
      (
        "conditional",
        closed(
          [
            ("filter", object([("type", string("string"))])),
            ("value", ref("scalarOrGradient")),
          ], required: ["value"])
      ),
      (
        "parameterSetting",
        object([
          (
            "description",
            string(
              "A value, a list of values interpolated over layers, or {filter, value} entries chosen by tensor name."
            )
          ),
          (
            "oneOf",
            .array([
              ref("scalar"),
              object([("type", string("array")), ("items", ref("scalar"))]),
              ref("conditional"),
              object([("type", string("array")), ("items", ref("conditional"))]),
            ])
          ),
        ])
      ),
      (
        "parameters",
        object([
          ("type", string("object")),
          ("propertyNames", object([("enum", strings(MethodRegistry.parameterNames.sorted()))])),
          ("additionalProperties", ref("parameterSetting")),
        ])
      ),
    ]
  }

  /// Each method's parameters, with their help, defaults and whether they are required.
  static func methodParameterDefinitions() -> [(String, JSONValue)] {
    MethodRegistry.specs.map { m in
      var props: [(String, JSONValue)] = []
      for p in m.parameters {
        var members: [(String, JSONValue)] = [("$ref", string("#/definitions/parameterSetting"))]
        var description = p.summary
        if let d = p.defaultDescription { description += " (default \(d))" }
        if p.isRequired { description += " (required)" }
        members.insert(("description", string(description)), at: 0)
        props.append((p.name, object(members)))
      }
      return (
        "parameters_\(m.name)",
        object([
          ("type", string("object")),
          ("description", string("Parameters of \(m.prettyName): \(m.summary).")),
          ("properties", object(props)),
          ("additionalProperties", .bool(false)),
        ])
      )
    }
  }
}
